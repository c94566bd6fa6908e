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

from ntkbook import companions, config, data, grid, provenance, settings, standalone
from ntkbook.store import Store

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
HIDDEN_TAGS = {"parameters", "injected-parameters"}
BUILD_RECORD = "build.json"
# The order pages start in: the protocol (it trains the stage-1 runs every other page starts
# from), then the longest first (the section 9 page is the eps = 8/255 setting's longest); the
# short ones fill in at the end, and the claims page, which reads every other page's results,
# last.
START_ORDER = ("book/protocol", "book/higher_eps", "book/linearized_training",
               "book/sgd_vs_linearized", "book/frozen_kernel_adversarial_training",
               "book/robustness_audit",
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


def settled(output: dict) -> dict:
    """A stream output as a terminal would show it once done: each line's text after its
    last carriage return (text progress bars redraw a line; a finished bar erases it)."""
    if output.get("output_type") != "stream" or "\r" not in output.get("text", ""):
        return output
    lines = [line.rsplit("\r", 1)[-1] for line in output["text"].split("\n")]
    text = "\n".join(line for line in lines if line.strip() or not line)
    return nbformat.from_dict({**output, "text": text})


def _tidy_executed(path: Path, page_key: str | None = None) -> None:
    """Hide the parameters and injected-parameters cells, drop the progress bars (widget
    outputs and their state, which would need a widget manager from a CDN to show) and
    record the page's key."""
    notebook = nbformat.read(path, as_version=4)
    if page_key:
        notebook.metadata.setdefault("ntkbook", {})["page_key"] = page_key
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if HIDDEN_TAGS & set(tags):
            cell.metadata["tags"] = sorted(set(tags) | {"remove-cell"})
        if cell.cell_type == "code":
            cell.outputs = [settled(o) for o in cell.outputs if WIDGET not in o.get("data", {})]
            cell.outputs = [o for o in cell.outputs
                            if o.get("output_type") != "stream" or o.get("text", "").strip()]
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


def execute_notebook(source: Path, target: Path, parameters: dict,
                     page_key: str | None = None) -> float:
    """Run ``source`` with papermill ``parameters`` into ``target``; return wall seconds.

    The page runs into a private file that replaces ``target`` only when every cell ran, so
    a failed run never overwrites the last good executed copy; the failed copy is kept
    beside it as ``<name>.failed.ipynb`` (named in the error). ``page_key`` (what the copy
    was executed from, :func:`page_key`) is recorded in the copy's metadata.
    """
    start = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    running = target.with_name(f".{target.stem}.{os.getpid()}.running.ipynb")
    failed = target.with_name(f"{target.stem}.failed.ipynb")
    try:
        try:
            papermill.execute_notebook(str(source), str(running), parameters=parameters,
                                       cwd=str(source.parent), progress_bar=False,
                                       kernel_name="python3",
                                       kernel_manager_class=PageKernelManager)
        except papermill.PapermillExecutionError as error:
            os.replace(running, failed)
            name = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
            raise BookError(f"{name} failed in cell {error.exec_count}: "
                            f"{error.ename}: {error.evalue} (failed copy: {failed}; the last "
                            f"good executed copy, if any, is kept)") from None
        _tidy_executed(running, page_key)
        os.replace(running, target)
    finally:
        running.unlink(missing_ok=True)
    failed.unlink(missing_ok=True)
    return time.perf_counter() - start


def code_sha256() -> str:
    """SHA-256 of the ntkbook package's sources: a page depends on all of them."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "ntkbook").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def page_key(document: str, profile: str, dataset: str) -> str:
    """What an executed page depends on: its source, the profile file, the ntkbook code and
    the data files (folder, names and sizes). Equal keys: the page need not run again."""
    folder = data.dataset_folder(dataset)
    files = sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.is_file())
    parts = [file_sha256(ROOT / f"{document}.ipynb"), provenance.profile_sha256(profile),
             code_sha256(), str(folder.resolve()), json.dumps(files)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def executed_key(path: Path) -> str | None:
    """The page key recorded in an executed copy, or None (absent, unreadable)."""
    try:
        return nbformat.read(path, as_version=4).metadata.get("ntkbook", {}).get("page_key")
    except (OSError, ValueError):
        return None


def model_description(cfg: config.Profile) -> str:
    """``'a small CNN (width 16)'``: what stage 1 trains under this profile."""
    return f"{config.MODEL_NAMES[cfg.model]} (width {cfg.width})"


def stage_sources(cfg: config.Profile, staging: Path, origin: str) -> None:
    """Copy the book's configuration and pages into ``staging``, stamped with the profile,
    its model and ``origin`` (what produced the outputs). Executed copies of the book's
    notebooks already there are kept (a rebuild reuses those whose key is unchanged);
    anything else in ``staging/book`` is removed."""
    pages = {f"{Path(d).name}.ipynb" for d in notebooks()}
    if (staging / "book").is_dir():
        for path in (staging / "book").iterdir():
            if path.name not in pages:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
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
    shutil.copytree(ROOT / "_static", staging / "_static", dirs_exist_ok=True)  # the book's CSS
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


def _render(staging: Path, output: Path, everything: bool = True) -> Path:
    """Render the staged book as HTML (warnings are errors); all pages when ``everything``,
    else only those Sphinx finds changed since its last render in ``output``."""
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
               "build", str(staging),
               "--path-output", str(output), "-W", "-n", "--keep-going",
               *(["--all"] if everything else [])]
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
                  jobs: int, keys: dict[str, str] | None = None) -> dict[str, float]:
    """Execute ``documents`` into ``staging`` under ``profile`` in :func:`start_order`, one
    after the other when ``jobs`` is 1, else ``jobs`` at a time, each in its own process and
    kernel. Pages share work through the store: its locks make a page that needs
    a training run or result another page is computing wait for it, never compute it twice.
    Returns wall seconds per page name, in the order of ``documents``."""
    seconds: dict[str, float] = {}
    if not documents:
        return seconds

    def arguments(document: str) -> tuple[Path, Path, dict, str | None]:
        return (ROOT / f"{document}.ipynb", staging / f"{document}.ipynb",
                {"profile": profile}, (keys or {}).get(document))

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
          from_results: bool = False, jobs: int | None = None, force: bool = False,
          jobs_first: bool = False, all_settings: bool = False) -> Path:
    """Execute the book's notebooks under ``profile`` and render HTML; return the HTML folder.

    A page whose executed copy was made from the same source, profile file, ntkbook code and
    data (:func:`page_key`) is not executed again unless ``force``. ``only`` restricts
    execution to notebooks whose name contains one of the strings; the others keep the
    outputs of the last build (or are rendered without them). ``jobs`` pages are executed
    at once (default :func:`default_jobs`). ``jobs_first`` first computes the profile's
    independent jobs (``ntkbook plan``) in that many worker processes, so that both cores
    stay busy while the pages, executed after, read the cache. ``from_results`` renders the
    published run of the profile instead, executing nothing.

    A profile executes the pages of its setting (:mod:`ntkbook.settings`); a main-setting
    profile's book also shows its companion settings (:mod:`ntkbook.companions`), from their
    builds beside ``output`` or their published runs; ``all_settings`` builds those first.
    """
    cfg = config.load_profile(profile)
    if jobs is not None and jobs < 1:
        raise BookError(f"jobs must be at least 1, got {jobs}")
    if jobs_first and (only or from_results):
        raise BookError("--jobs-first computes the work of every page: it goes with a whole "
                        "build, not with --only or --from-results")
    if all_settings and (only or from_results):
        raise BookError("--all-settings builds every setting's whole book: it goes with "
                        "neither --only nor --from-results (which shows every published "
                        "setting anyway)")
    if from_results:
        return build_from_results(cfg, output)
    data.dataset_folder(cfg.dataset)  # fail now, before any compute, if the data is missing
    warning = config.cpu_only_warning(cfg)
    if warning:
        log.warning(warning)  # hours of work where minutes were expected: say so, go on
    Store()  # and if the cache folder cannot be written
    output = Path(output or ROOT / "_build" / cfg.profile)
    if all_settings:
        for name in settings.companions(profile).values():
            log.info("building the companion setting %s first", name)
            build(name, output=output.parent / name, jobs=jobs, force=force,
                  jobs_first=jobs_first)
    staging = output / "source"
    began = time.time()
    stage_sources(cfg, staging, origin=f"executed by `ntkbook build` on "
                                       f"{time.strftime('%Y-%m-%d')}")
    pages = settings.pages(cfg, notebooks())
    keys = {d: page_key(d, profile, cfg.dataset) for d in pages}
    asked = [d for d in pages if not only or any(name in d for name in only)]
    todo = [d for d in asked
            if force or executed_key(staging / f"{d}.ipynb") != keys[d]]
    for document in notebooks():
        target = staging / f"{document}.ipynb"
        if document not in pages:
            nbformat.write(not_in_setting(ROOT / f"{document}.ipynb", cfg), target)
        elif document not in asked and not target.is_file():
            shutil.copy(ROOT / f"{document}.ipynb", target)  # shown without outputs
    previous = _previous_record(output)
    reused = [Path(d).name for d in asked if d not in todo]
    log.info("executing %d page(s) under profile %s%s", len(todo), cfg.label,
             f"; {len(reused)} unchanged since their last run, reused" if reused else "")
    workers = jobs or default_jobs()
    jobs_seconds = run_jobs_first(cfg, profile, workers) if jobs_first and todo else None
    seconds = execute_pages(todo, staging, profile, workers, keys)
    seconds = {Path(d).name: seconds.get(Path(d).name,
                                         previous.get("wall_seconds", {}).get(Path(d).name))
               for d in pages if Path(d).name in seconds or Path(d).name in reused}
    record = provenance.record(cfg, profile, began, seconds,
                               {Path(d).name: file_sha256(ROOT / f"{d}.ipynb")
                                for d in pages}, complete=not only)
    record.update(reused=reused, code_sha256=code_sha256(),
                  companions=companions.compose(staging, profile, builds=output.parent))
    if jobs_seconds is not None:
        record.update(jobs_seconds=jobs_seconds, method=f"the profile's jobs first ({workers} "
                      f"worker processes), then the pages {workers} at a time")
    (output / BUILD_RECORD).write_text(json.dumps(record, indent=1))
    # what a page shows also depends on ntkbook (its Sphinx extension, say): a build that
    # executed anything renders every page; one that executed nothing, only what changed
    unchanged = not todo and previous.get("code_sha256") == record["code_sha256"]
    return _render(staging, output, everything=not unchanged)


def run_jobs_first(cfg: config.Profile, profile: str, workers: int) -> float:
    """Compute every job of the profile's plan in ``workers`` processes; wall seconds."""
    began = time.time()
    log.info("computing the jobs of profile %s first, %d at a time", cfg.label, workers)
    failed = grid.run_in_workers(cfg, str(config.profile_path(profile).resolve()), Store(),
                                 workers=workers)
    if failed:
        raise BookError(f"some jobs of profile {cfg.label} failed (listed above); run the "
                        "same command again to retry them")
    log.info("jobs done in %.1f min", (time.time() - began) / 60)
    return round(time.time() - began, 1)


def _previous_record(output: Path) -> dict:
    """The last build's record in ``output`` (empty if none)."""
    try:
        return json.loads((output / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        return {}


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
    pages = settings.pages(cfg, notebooks())
    for document in notebooks():
        executed = published / f"{Path(document).name}.ipynb"
        if document not in pages:
            nbformat.write(not_in_setting(ROOT / f"{document}.ipynb", cfg),
                           staging / f"{document}.ipynb")
        elif executed.is_file():
            nbformat.write(standalone.in_book(nbformat.read(executed, as_version=4)),
                           staging / f"{document}.ipynb")
        else:
            log.warning("book/%s.ipynb is newer than the published run: shown as a note",
                        Path(document).name)
            nbformat.write(not_in_run(ROOT / f"{document}.ipynb", cfg.profile),
                           staging / f"{document}.ipynb")
    for name, origin in companions.compose(staging, cfg.profile, builds=None).items():
        log.info("%s: %s", name, origin)
    return _render(staging, output)


def not_in_setting(source: Path, cfg: config.Profile) -> nbformat.NotebookNode:
    """A page the profile's setting does not execute: its title and a note on which
    setting does (a main-setting book shows its companions' pages instead where they exist:
    :mod:`ntkbook.companions`)."""
    owner = next((s for s in settings.COMPANIONS if source.stem in s.own), None)
    if owner is not None:
        note = (f"This page is the {owner.title} setting's. Profile `{cfg.label}` has no "
                f"companion for it (a file `parameters/{cfg.profile}-{owner.name}.yaml` with "
                f"dataset {owner.dataset} and eps_255 {owner.eps_255:g}): build one to show it.")
    else:
        note = (f"Profile `{cfg.label}` is the book's {settings.of(cfg).title} setting; this "
                f"page is the main setting's (CIFAR-10, eps = 4/255), whose book shows the "
                f"other settings beside its own pages.")
    return note_page(source, note)


def not_in_run(source: Path, profile: str) -> nbformat.NotebookNode:
    """A page the published run does not have: its title and a note saying so."""
    return note_page(source, f"This page is newer than the published run of profile "
                             f"`{profile}`, so the run has no executed copy of it. `ntkbook "
                             f"build --profile {profile}` executes it; the next published run "
                             f"will include it.")


def note_page(source: Path, note: str) -> nbformat.NotebookNode:
    """The notebook ``source`` reduced to its title and ``note``."""
    notebook = nbformat.read(source, as_version=4)
    title = notebook.cells[0].source.splitlines()[0]
    notebook.cells = [nbformat.v4.new_markdown_cell(f"{title}\n\n{note}")]
    return notebook
