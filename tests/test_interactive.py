"""Pages re-run in a live kernel, as a reader editing a parameter and running from the top."""

import nbformat
import pytest
from nbclient import NotebookClient

from ntkbook import book, config

PAGES = sorted((book.ROOT / "book").glob("*.ipynb"))


def first_cells(path):
    """The parameters cell and the validation cell of a page."""
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return code[0], code[1]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One live kernel for the module, with a private cache."""
    notebook = nbformat.v4.new_notebook()
    client = NotebookClient(notebook, kernel_name="python3", timeout=300)
    cache = tmp_path_factory.mktemp("cache")
    with client.setup_kernel():
        def run(source: str) -> list:
            notebook.cells.append(nbformat.v4.new_code_cell(source))
            cell = client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
            return cell.outputs

        run(f"import os; os.environ['NTKBOOK_CACHE_DIR'] = {str(cache)!r}")
        yield run


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_a_page_validates_again_after_its_own_names_exist(kernel, page):
    parameters, validation = first_cells(page)
    kernel(parameters.source)
    kernel(validation.source)
    # names a page defines after its validation cell, as left by a first full run
    kernel("spawn = [0.0, 1.0]; start = 1.0; epochs = [0.0]; seed = 0; final = 6; rows = []")
    kernel(parameters.source.replace('"smoke"', '"smoke"\nstage2_lr = 0.02'))  # an edit
    outputs = kernel(validation.source + "\nprint('validated', cfg.stage2_lr)")
    assert any("validated 0.02" in o.get("text", "") for o in outputs), outputs


def test_a_mistyped_name_in_the_parameter_cells_is_still_rejected():
    history = ["", 'profile = "smoke"', '# Parameters\nprofile = "smoke"\nstage2lr = 0.1',
               "cfg = config.from_notebook(globals())"]
    with pytest.raises(config.ProfileError, match="stage2lr"):
        config.from_notebook({"In": history, "profile": "smoke", "stage2lr": 0.1})
    other_names = {"In": history[:2] + history[3:], "profile": "smoke", "spawn": [1.0]}
    assert config.from_notebook(other_names).profile == "smoke"
