"""Build the book under one profile: papermill executes each notebook, Jupyter Book renders.

``_config.yml`` and ``_toc.yml`` at the repository root define the book. The build stages a
copy of it in ``_build/<profile>/source`` with every notebook executed there (committed
notebooks stay output-free), then runs ``jupyter-book build`` with execution off; the HTML
lands in ``_build/<profile>/_build/html``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill
import yaml

from ntkbook import config, data

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
HIDDEN_TAGS = {"parameters", "injected-parameters"}


class BookError(RuntimeError):
    """A notebook raised, or Jupyter Book failed."""


def toc_documents(toc_path: Path) -> list[str]:
    """Every document of ``_toc.yml`` (root first), as paths without suffix."""
    toc = yaml.safe_load(toc_path.read_text())
    documents = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                documents.append(entry["file"])
            walk(entry.get("sections", []))
            for part in entry.get("parts", []):
                walk(part.get("chapters", []))

    walk(toc.get("chapters", []))
    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return documents


def _hide_parameter_cells(path: Path) -> None:
    """Tag the parameters and injected-parameters cells so the book does not show them."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if HIDDEN_TAGS & set(tags):
            cell.metadata["tags"] = sorted(set(tags) | {"remove-cell"})
    nbformat.write(notebook, path)


def execute_notebook(source: Path, target: Path, parameters: dict) -> float:
    """Run ``source`` with papermill ``parameters`` into ``target``; return wall seconds."""
    start = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    # A non-interactive MPLBACKEND (Agg, say) would reach the kernel and silently drop every
    # figure from the outputs: the kernel must keep IPython's inline backend.
    backend = os.environ.pop("MPLBACKEND", None)
    try:
        papermill.execute_notebook(str(source), str(target), parameters=parameters,
                                   cwd=str(source.parent), progress_bar=False,
                                   kernel_name="python3")
    except papermill.PapermillExecutionError as error:
        name = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
        raise BookError(f"{name} failed in cell {error.exec_count}: "
                        f"{error.ename}: {error.evalue} (executed copy: {target})") from None
    finally:
        if backend is not None:
            os.environ["MPLBACKEND"] = backend
    _hide_parameter_cells(target)
    return time.perf_counter() - start


def stage_sources(cfg: config.Profile, staging: Path) -> None:
    """Copy the book's configuration and pages into ``staging``, stamped with the profile."""
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "book").mkdir(parents=True)
    settings = yaml.safe_load((ROOT / "_config.yml").read_text())
    settings["parse"].setdefault("myst_substitutions", {})["profile"] = cfg.label
    (staging / "_config.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
    shutil.copy(ROOT / "_toc.yml", staging / "_toc.yml")
    for path in (ROOT / "book").iterdir():
        if path.is_file() and path.suffix != ".ipynb":
            shutil.copy(path, staging / "book" / path.name)


def build(profile: str = "smoke", output: Path | None = None,
          only: list[str] | None = None) -> Path:
    """Execute the book's notebooks under ``profile`` and render HTML; return the HTML folder.

    ``only`` restricts execution to notebooks whose name contains one of the strings; the
    others are rendered without outputs.
    """
    cfg = config.load_profile(profile)
    data.dataset_folder(cfg.dataset)  # fail now, before any compute, if the data is missing
    output = Path(output or ROOT / "_build" / cfg.profile)
    staging = output / "source"
    stage_sources(cfg, staging)
    documents = toc_documents(ROOT / "_toc.yml")
    for document in documents:
        source = ROOT / f"{document}.ipynb"
        if not source.is_file():
            continue
        target = staging / f"{document}.ipynb"
        if only and not any(name in document for name in only):
            shutil.copy(source, target)
            continue
        log.info("executing %s under profile %s", document, cfg.label)
        seconds = execute_notebook(source, target, {"profile": profile})
        log.info("%s executed in %.1f s", document, seconds)
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
               "build", str(staging),
               "--path-output", str(output), "-W", "-n", "--keep-going", "--all"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise BookError(f"jupyter-book failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    html = output / "_build" / "html"
    log.info("book built: %s", html / "index.html")
    return html
