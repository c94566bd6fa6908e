"""A main-setting book with its companion settings beside it: the CIFAR-100 rows of
Figures 1-3 after the CIFAR-10 pages, the section 9 page from the eps = 8/255 run.

Each companion's executed pages come from its own build (``<builds>/<companion profile>``,
used when its page keys are current) or from its published run
(``results/<companion profile>/``); a companion with neither is named on the page, with the
command that makes it, and nothing is computed. Cells added here carry
``metadata.ntkbook.companion`` (the setting's name), so that a rebuild replaces them and a
publication leaves them out (:func:`without_companions`).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ntkbook import book, config, provenance, settings, standalone
from ntkbook.report import CLAIMS_KEY
from ntkbook.settings import Setting

log = logging.getLogger(__name__)

MARK = "companion"
HEADING = re.compile(r"^(#{1,5}) ", re.MULTILINE)
HIDDEN = {"parameters", "injected-parameters"}


@dataclass(frozen=True)
class Source:
    """Where a companion page was found, or why not."""

    notebook: nbformat.NotebookNode | None
    origin: str  # "published run of 2026-12-07 (`results/cpu-eps8/`)", or what is missing


def find(profile: str, page: str, builds: Path | None) -> Source:
    """The executed ``page`` of companion ``profile``: its current build under ``builds``
    (None: published runs only), else its published run."""
    document = f"book/{page}"
    built = builds / profile / "source" / f"{document}.ipynb" if builds else None
    out_of_date = False
    if built is not None and built.is_file():
        cfg_dataset = config.load_profile(profile).dataset
        if book.executed_key(built) == book.page_key(document, profile, cfg_dataset):
            record = _json(builds / profile / book.BUILD_RECORD)
            return Source(nbformat.read(built, as_version=4),
                          f"executed by `ntkbook build --profile {profile}` on "
                          f"{record.get('finished', '?')[:10]}")
        out_of_date = True
        log.warning("%s: the build of %s is out of date (`ntkbook build --profile %s` "
                    "updates it)", page, profile, profile)
    published = book.RESULTS / profile
    if (published / f"{page}.ipynb").is_file() and (published / "run.json").is_file():
        run = _json(published / "run.json")
        stale = " (its source changed since: stale)" if page in \
            provenance.stale_notebooks(run) else ""
        return Source(standalone.in_book(nbformat.read(published / f"{page}.ipynb",
                                                       as_version=4)),
                      provenance.describe(run) + stale)
    command = f"`ntkbook build --profile {profile}`" + (
        "" if builds else f" then `ntkbook publish --profile {profile}`")
    what = ("built, but out of date (its page, profile, code or data changed since) and not "
            "published" if out_of_date else f"not {'built or ' if builds else ''}published yet")
    return Source(None, f"{what}: {command} makes it")


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def without_companions(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``notebook`` without the cells :func:`compose` added."""
    notebook = copy.deepcopy(notebook)
    notebook.cells = [c for c in notebook.cells if MARK not in c.metadata.get("ntkbook", {})]
    return notebook


def _marked(cell: nbformat.NotebookNode, setting: Setting) -> nbformat.NotebookNode:
    cell.metadata.setdefault("ntkbook", {})[MARK] = setting.name
    if not cell.get("id", "").startswith(f"{setting.name}-"):  # unique beside the page's own
        cell["id"] = f"{setting.name}-{cell.get('id') or uuid.uuid4().hex[:8]}"[:64]
    return cell


def section(setting: Setting, profile: str, found: Source, title: str
            ) -> list[nbformat.NotebookNode]:
    """The cells appended to a main page for ``setting``: a heading, where they come from,
    and the companion page's cells one heading level down, glue roles resolved to their
    values (the main page glues the same names) and its claims left to its own run."""
    heading = f"## {setting.title}: {title}\n\n"
    if found.notebook is None:
        return [_marked(nbformat.v4.new_markdown_cell(
            heading + f"The {setting.title} setting (profile `{profile}`) is "
                      f"{found.origin}."), setting)]
    values = standalone.glue_values(found.notebook)
    cells = [_marked(nbformat.v4.new_markdown_cell(
        heading + f"Profile `{profile}`, {found.origin}."), setting)]
    for cell in copy.deepcopy(found.notebook.cells[1:]):  # the first: the page's title
        if HIDDEN & set(cell.metadata.get("tags", [])):
            continue
        if cell.cell_type == "markdown":
            text, _ = standalone.resolve_glue(cell.source, values, profile)
            cell.source = HEADING.sub(lambda m: "#" + m[1] + " ", text)
        elif cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if "scrapbook" not in o.get("metadata", {})]
            for output in cell.outputs:
                output.get("metadata", {}).pop(CLAIMS_KEY, None)
        cells.append(_marked(cell, setting))
    return cells


def own_page(setting: Setting, profile: str, found: Source, source: Path
             ) -> nbformat.NotebookNode:
    """A page only ``setting`` executes, as the main book shows it: the companion's executed
    copy with a line on where it comes from, or its title and what is missing."""
    if found.notebook is None:
        notebook = book.note_page(source, f"This page is the {setting.title} setting's "
                                          f"(profile `{profile}`), which is {found.origin}.")
    else:
        notebook = copy.deepcopy(found.notebook)
        notebook.cells.insert(1, nbformat.v4.new_markdown_cell(
            f"Profile `{profile}`, {found.origin}."))
    for cell in notebook.cells:
        _marked(cell, setting)
    return notebook


def compose(staging: Path, profile: str, builds: Path | None) -> dict[str, str]:
    """Add the companions of main-setting ``profile`` to the staged pages in ``staging``
    (replacing what an earlier build added); returns ``{companion profile: where it came
    from}`` for the record. ``builds``: the folder of local builds (None: published only).
    Pages the staged book lacks are left alone."""
    origins: dict[str, str] = {}
    staged = {path.stem for path in (staging / "book").glob("*.ipynb")}
    appended = {page for s in settings.COMPANIONS for page in s.appended_to} & staged
    pages = {page: without_companions(nbformat.read(staging / "book" / f"{page}.ipynb",
                                                    as_version=4)) for page in appended}
    for setting, name in settings.companions(profile).items():
        for page in (page for page in setting.appended_to if page in pages):
            found = find(name, page, builds)
            origins.setdefault(name, found.origin)
            title = standalone.title(found.notebook or pages[page]) or page
            pages[page].cells += section(setting, name, found, _short(title))
        for page in (page for page in setting.own if page in staged):
            found = find(name, page, builds)
            origins.setdefault(name, found.origin)
            nbformat.write(own_page(setting, name, found, book.ROOT / "book" / f"{page}.ipynb"),
                           staging / "book" / f"{page}.ipynb")
    for page, notebook in pages.items():
        nbformat.write(notebook, staging / "book" / f"{page}.ipynb")
    return origins


def _short(title: str) -> str:
    """``'How the kernel evolves'`` from ``'How the kernel evolves (section 3, Figure 1)'``."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", title)
