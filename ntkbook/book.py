"""Build the book under one profile: papermill executes each notebook, Jupyter Book renders.

``_config.yml`` and ``_toc.yml`` at the repository root define the book. The build stages a
copy of it in ``_build/<profile>/source`` with every notebook executed there (committed
notebooks stay output-free), records what produced it in ``_build/<profile>/build.json``,
then runs ``jupyter-book build`` with execution off; the HTML lands in
``_build/<profile>/_build/html``. ``from_results`` renders a published run
(``results/<profile>/``, see :mod:`ntkbook.publish`) instead, executing nothing.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.util
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import papermill
import yaml
from jupyter_client.manager import AsyncKernelManager

from ntkbook import config, data, provenance
from ntkbook.store import Store

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
HIDDEN_TAGS = {"parameters", "injected-parameters"}
BUILD_RECORD = "build.json"
# The order pages start in: the protocol (it trains the stage-1 runs every other page starts
# from), then the longest first; the short ones fill in at the end, and the claims page, which
# reads every other page's results, last.
START_ORDER = ("book/protocol", "book/linearized_training", "book/sgd_vs_linearized",
               "book/frozen_kernel_adversarial_training", "book/robustness_audit",
               "book/transferability", "book/ntk_eigenvectors", "book/kernel_evolution",
               "book/claims")
OFFLINE_MATH = "sphinx-mathjax-offline"  # MathJax 3 inside the build, for reading offline


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


def notebooks() -> list[str]:
    """The documents of the table of contents that are notebooks, in order."""
    return [d for d in toc_documents(ROOT / "_toc.yml") if (ROOT / f"{d}.ipynb").is_file()]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


WIDGET = "application/vnd.jupyter.widget-view+json"  # tqdm's progress bars in a kernel


def _tidy_executed(path: Path) -> None:
    """Hide the parameters and injected-parameters cells, and drop the progress bars (widget
    outputs and their state, which would need a widget manager from a CDN to show)."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if HIDDEN_TAGS & set(tags):
            cell.metadata["tags"] = sorted(set(tags) | {"remove-cell"})
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET not in o.get("data", {})]
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, path)


class PageKernelManager(AsyncKernelManager):
    """A page's kernel: over Unix sockets in a private temporary folder, not localhost TCP
    (whose start-up warns on every page that the traffic is unencrypted); without a
    non-interactive ``MPLBACKEND`` (Agg, say, would silently drop every figure from the
    outputs: the kernel keeps IPython's inline backend); and without JAX preallocating most of
    a GPU, so that pages executed at once can share one."""

    def __init__(self, **kwargs):
        self._sockets = tempfile.TemporaryDirectory(prefix="ntkbook-kernel-")
        super().__init__(transport="ipc", ip=os.path.join(self._sockets.name, "kernel"),
                         **kwargs)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        env = {k: v for k, v in (kw.get("env") or os.environ).items() if k != "MPLBACKEND"}
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        await super()._async_launch_kernel(kernel_cmd, **{**kw, "env": env})

    async def _async_interrupt_kernel(self) -> None:
        """No SIGINT on shutdown: jupyter_client interrupts every kernel before shutting it
        down, and papermill only shuts down kernels that are done, where the signal can only
        race the last reply and print "KeyboardInterrupt caught in kernel"."""
        if not self.shutting_down:
            await super()._async_interrupt_kernel()


def execute_notebook(source: Path, target: Path, parameters: dict) -> float:
    """Run ``source`` with papermill ``parameters`` into ``target``; return wall seconds."""
    start = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(source), str(target), parameters=parameters,
                                   cwd=str(source.parent), progress_bar=False,
                                   kernel_name="python3", kernel_manager_class=PageKernelManager)
    except papermill.PapermillExecutionError as error:
        name = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
        raise BookError(f"{name} failed in cell {error.exec_count}: "
                        f"{error.ename}: {error.evalue} (executed copy: {target})") from None
    _tidy_executed(target)
    return time.perf_counter() - start


def model_description(cfg: config.Profile) -> str:
    """``'a small CNN (width 16)'``: what stage 1 trains under this profile."""
    return f"{config.MODEL_NAMES[cfg.model]} (width {cfg.width})"


def stage_sources(cfg: config.Profile, staging: Path, origin: str, *,
                  keep_notebooks: bool = False) -> None:
    """Copy the book's configuration and pages into ``staging``, stamped with the profile,
    its model and ``origin`` (what produced the outputs); ``keep_notebooks`` keeps the
    notebooks a previous build executed there."""
    if staging.exists() and not keep_notebooks:
        shutil.rmtree(staging)
    (staging / "book").mkdir(parents=True, exist_ok=True)
    settings = yaml.safe_load((ROOT / "_config.yml").read_text())
    substitutions = settings["parse"].setdefault("myst_substitutions", {})
    substitutions.update(profile=cfg.label, model=model_description(cfg), origin=origin,
                         **published_runs())
    if importlib.util.find_spec(OFFLINE_MATH) is not None:  # MathJax served by the book itself
        settings.setdefault("sphinx", {}).setdefault("extra_extensions", []).append(OFFLINE_MATH)
    else:
        log.warning("%s is not installed: the book's maths will load MathJax from a CDN",
                    OFFLINE_MATH)
    (staging / "_config.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
    shutil.copy(ROOT / "_toc.yml", staging / "_toc.yml")
    for path in (ROOT / "book").iterdir():
        if path.is_file() and path.suffix != ".ipynb":
            shutil.copy(path, staging / "book" / path.name)


def published_runs() -> dict[str, str]:
    """``{published_<profile>: what its run cost, and where it is}`` for every run in
    ``results/`` (the intro's substitutions: no number of a run is typed by hand)."""
    out = {}
    for path in sorted(RESULTS.glob("*/run.json")):
        run = json.loads(path.read_text())
        out[f"published_{run['profile'].replace('-', '_')}"] = (
            f"{run['total_wall_seconds'] / 60:.0f} minutes on {run['machine']['cores']} cores "
            f"(published run of {run['finished'][:10]}, `results/{run['profile']}/`)")
    return out


def _render(staging: Path, output: Path) -> Path:
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
               "build", str(staging),
               "--path-output", str(output), "-W", "-n", "--keep-going", "--all"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise BookError(f"jupyter-book failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    html = output / "_build" / "html"
    log.info("book built: %s", html / "index.html")
    return html


def default_jobs() -> int:
    """Pages executed at once unless told: two where there are two cores or more (a page's
    kernel keeps about 1.2 of 2 cores busy: benchmarks/RESULTS.md)."""
    return min(2, os.cpu_count() or 1)


def start_order(documents: list[str]) -> list[str]:
    """``documents`` in :data:`START_ORDER` (pages it does not name last, in their order)."""
    rank = {d: i for i, d in enumerate(START_ORDER)}
    return sorted(documents, key=lambda d: rank.get(d, len(rank)))


def execute_pages(documents: list[str], staging: Path, profile: str,
                  jobs: int) -> dict[str, float]:
    """Execute ``documents`` into ``staging`` under ``profile`` in :func:`start_order`, one
    after the other when ``jobs`` is 1, else ``jobs`` at a time, each in its own process and
    kernel. Pages share work through the store: its locks make a page that needs
    a training run or result another page is computing wait for it, never compute it twice.
    Returns wall seconds per page name, in the order of ``documents``."""
    seconds: dict[str, float] = {}

    def arguments(document: str) -> tuple[Path, Path, dict]:
        return ROOT / f"{document}.ipynb", staging / f"{document}.ipynb", {"profile": profile}

    def done(document: str, wall: float) -> None:
        seconds[Path(document).name] = round(wall, 1)
        log.info("%s executed in %.1f s", document, wall)

    if jobs == 1:
        for document in start_order(documents):
            log.info("executing %s", document)
            done(document, execute_notebook(*arguments(document)))
    else:
        queue = start_order(documents)
        log.info("executing %s, %d at once", ", ".join(queue), jobs)
        with concurrent.futures.ProcessPoolExecutor(
                jobs, mp_context=multiprocessing.get_context("spawn")) as executor:
            running = {executor.submit(execute_notebook, *arguments(d)): d for d in queue}
            try:
                for future in concurrent.futures.as_completed(running):
                    done(running[future], future.result())
            except BaseException:
                executor.shutdown(cancel_futures=True)  # pages not started yet are not run
                raise
    return {Path(d).name: seconds[Path(d).name] for d in documents}


def build(profile: str = "smoke", output: Path | None = None, only: list[str] | None = None,
          from_results: bool = False, jobs: int | None = None) -> Path:
    """Execute the book's notebooks under ``profile`` and render HTML; return the HTML folder.

    ``only`` restricts execution to notebooks whose name contains one of the strings; the
    others keep the outputs of the last build (or are rendered without them). ``jobs`` pages
    are executed at once (default :func:`default_jobs`).
    ``from_results`` renders the published run of the profile instead, executing nothing.
    """
    cfg = config.load_profile(profile)
    if jobs is not None and jobs < 1:
        raise BookError(f"jobs must be at least 1, got {jobs}")
    if from_results:
        return build_from_results(cfg, output)
    data.dataset_folder(cfg.dataset)  # fail now, before any compute, if the data is missing
    Store()  # and if the cache folder cannot be written
    output = Path(output or ROOT / "_build" / cfg.profile)
    staging = output / "source"
    began = time.time()
    stage_sources(cfg, staging, origin=f"executed by `ntkbook build` on "
                                       f"{time.strftime('%Y-%m-%d')}", keep_notebooks=bool(only))
    todo = [d for d in notebooks() if not only or any(name in d for name in only)]
    for document in notebooks():
        target = staging / f"{document}.ipynb"
        if document not in todo and not target.is_file():
            shutil.copy(ROOT / f"{document}.ipynb", target)  # shown without outputs
    log.info("executing %d page(s) under profile %s", len(todo), cfg.label)
    seconds = execute_pages(todo, staging, profile, jobs or default_jobs())
    record = provenance.record(cfg, profile, began, seconds,
                               {Path(d).name: file_sha256(ROOT / f"{d}.ipynb")
                                for d in notebooks()}, complete=not only)
    (output / BUILD_RECORD).write_text(json.dumps(record, indent=1))
    return _render(staging, output)


def build_from_results(cfg: config.Profile, output: Path | None = None) -> Path:
    """Render ``results/<profile>/`` (published executed notebooks) without executing."""
    published = RESULTS / cfg.profile
    if not (published / "run.json").is_file():
        raise BookError(f"no published run in {published}: run `ntkbook build --profile "
                        f"{cfg.profile}` then `ntkbook publish --profile {cfg.profile}`")
    run = json.loads((published / "run.json").read_text())
    for name in provenance.stale_notebooks(run):
        log.warning("stale: book/%s.ipynb changed after the published run; its published "
                    "outputs are from the older version", name)
    output = Path(output or ROOT / "_build" / f"{cfg.profile}-results")
    staging = output / "source"
    stage_sources(cfg, staging, origin=provenance.describe(run))
    for document in notebooks():
        executed = published / f"{Path(document).name}.ipynb"
        if executed.is_file():
            shutil.copy(executed, staging / f"{document}.ipynb")
        else:
            log.warning("book/%s.ipynb is newer than the published run: shown as a note",
                        Path(document).name)
            nbformat.write(not_in_run(ROOT / f"{document}.ipynb", cfg.profile),
                           staging / f"{document}.ipynb")
    return _render(staging, output)


def not_in_run(source: Path, profile: str) -> nbformat.NotebookNode:
    """A page the published run does not have: its title and a note saying so."""
    notebook = nbformat.read(source, as_version=4)
    title = notebook.cells[0].source.splitlines()[0]
    notebook.cells = [nbformat.v4.new_markdown_cell(
        f"{title}\n\nThis page is newer than the published run of profile `{profile}`, so "
        f"the run has no executed copy of it. `ntkbook build --profile {profile}` executes it; "
        f"the next published run will include it.")]
    return notebook
