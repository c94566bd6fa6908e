"""Every papermill command the README shows works as written (up to parameter validation)."""

import re
import shlex
import subprocess
import sys

import nbformat
import pytest

from ntkbook import book, config

README = book.ROOT / "README.md"


def papermill_commands() -> list[str]:
    """The papermill lines of the README's bash blocks, comments stripped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if re.match(r"(\S*/)?papermill ", line)]


def test_the_readme_shows_papermill_examples():
    assert len(papermill_commands()) >= 2


@pytest.mark.parametrize("command", papermill_commands())
def test_a_readme_papermill_example_passes_validation(command, tmp_path):
    args = shlex.split(command)[1:]
    prepared = tmp_path / "prepared.ipynb"
    result = subprocess.run([sys.executable, "-m", "papermill", args[0], str(prepared),
                             *args[2:], "--prepare-only"], cwd=book.ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "-p" and args[i + 1] != "profile"]
    if not overrides:  # the clean way: a whole profile, no "unknown parameter" noise
        assert "Passed unknown parameter" not in result.stderr
    parameters, injected = [c.source for c in nbformat.read(prepared, 4).cells
                            if c.cell_type == "code"][:2]
    namespace: dict = {}
    for source in (parameters, injected):
        exec(source, namespace)  # noqa: S102 - literal assignments written by papermill
    namespace["In"] = ["", parameters, injected, "cfg = config.from_notebook(globals())"]
    config.from_notebook(namespace)  # raises ProfileError if the example is invalid
