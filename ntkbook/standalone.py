"""Published notebooks that read on their own, outside the book (a code-hosting site's
viewer, nbconvert): MyST roles resolved to the text and links they stand for, one parameters
cell, and no path or timing of the machine that executed them."""

from __future__ import annotations

import ast
import copy
import html
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import nbformat

from ntkbook import book

GLUE_ROLE = re.compile(r"\{glue(?::(?P<kind>[a-z]*))?\}`(?P<key>[^`]+)`")
GLUE_LEFT = re.compile(r"\{glue(?::[a-z]*)?\}")  # a role or directive nothing resolved
DOC_ROLE = re.compile(r"\{doc\}`(?P<body>[^`]+)`")
REF_ROLE = re.compile(r"\{(?:ref|numref)\}`(?P<body>[^`]+)`")
EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)
BINARY = re.compile(r"^image/(?!svg)|^application/pdf")  # base64 output data, left alone
RECORD = "application/papermill.record/"  # the mime prefix of a value glued, not displayed
MISSING = "**[missing glue value: {}]**"
PAPERMILL_SCRATCH = ("cwd", "environment_variables")


def _binary(mime: str) -> bool:
    return bool(BINARY.match(mime.removeprefix(RECORD)))


def _markdown_text(text: str) -> str:
    """``text`` escaped so that Markdown shows it as it is (as MyST shows ``{glue:text}``);
    underscores inside words are left alone (they emphasise nothing)."""
    text = re.sub(r"([\\`*\[\]<>$|])", r"\\\1", text)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def glue_values(notebook: nbformat.NotebookNode) -> dict[str, dict[str, Any]]:
    """``{name: mime bundle}`` of every ``myst_nb.glue`` output of the notebook (the last one
    where a name is glued twice), the bundle's keys without the scrapbook's mime prefix."""
    values = {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            scrap = output.get("metadata", {}).get("scrapbook")
            if output.get("output_type") not in ("display_data", "execute_result") or not scrap:
                continue
            prefix = scrap.get("mime_prefix", "")
            values[scrap["name"]] = {mime[len(prefix):]: value
                                     for mime, value in output.get("data", {}).items()
                                     if mime.startswith(prefix)}
    return values


def glue_text(bundle: Mapping[str, Any], kind: str, spec: str | None) -> str:
    """The Markdown that a glue role of ``kind`` (``text``, ``md``, or the best of the
    bundle for ``''``/``any``) shows for a bundle, as myst_nb renders it: a string's text
    without its repr's quotes, a number formatted by ``spec`` where given."""
    def plain() -> str:
        text = "".join(bundle["text/plain"]).strip()
        try:
            value = ast.literal_eval(text)
            text = value if isinstance(value, str) else text  # a string's repr: its text
        except (ValueError, SyntaxError):
            pass
        if spec:
            try:
                text = f"{float(text):>{spec}}"
            except ValueError:
                pass
        return _markdown_text(text)

    if kind == "md" or (kind in ("", "any") and "text/markdown" in bundle):
        return "".join(bundle["text/markdown"]).strip()
    if "text/plain" in bundle and (kind == "text" or not any(map(_binary, bundle))):
        return plain()
    image = next((m for m in bundle if m.startswith("image/") and _binary(m)), None)
    if image and kind != "text":
        return f"![](data:{image};base64,{''.join(bundle[image]).strip()})"
    raise ValueError(f"a {{glue:{kind}}} role cannot show a value of {', '.join(bundle)}")


def title(notebook: nbformat.NotebookNode) -> str | None:
    """The notebook's title: its first level-1 heading."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return None


def doc_link(body: str, page: str, pages: Mapping[str, str], root: Path) -> str:
    """A ``{doc}`` role's Markdown from the published copy of ``book/<page>``: a link to the
    published page beside it (``pages``: name -> title), else to the book's source of the
    page (``../../book/<target>.md``: a page the run did not execute, like the Markdown
    pages). The latter is an HTML link: a Markdown one to a file outside the book's sources
    would fail ``ntkbook build --from-results``, which renders these notebooks as the book's
    ``book/`` pages."""
    match = EXPLICIT.match(body)
    text, target = (match["text"], match["target"]) if match else (None, body)
    target = re.sub(r"\.(ipynb|md)$", "", target.strip())
    document = os.path.normpath(target.lstrip("/") if target.startswith("/")
                                else os.path.join("book", target))
    name = Path(document).name
    if document == f"book/{name}" and name in pages:
        text = text or pages[name] or name
        return f"[{text.replace('[', '(').replace(']', ')')}]({name}.ipynb)"
    source = next((root / f"{document}{suffix}" for suffix in (".md", ".ipynb")
                   if (root / f"{document}{suffix}").is_file()), None)
    if source is None:
        raise book.BookError(f"{page}: {{doc}}`{body}` names no page of the book")
    if text is None:
        text = (title(nbformat.read(source, as_version=4)) if source.suffix == ".ipynb" else
                next((line[2:].strip() for line in source.read_text().splitlines()
                      if line.startswith("# ")), None)) or name
    href = "../../" + source.relative_to(root).as_posix()
    return f'<a href="{html.escape(href)}">{html.escape(text, quote=False)}</a>'


SOURCE_LINK = re.compile(
    r'<a href="\.\./\.\./book/(?P<name>[\w-]+)\.(?:md|ipynb)">(?P<text>[^<`]*)</a>')


def rewrite_markdown(notebook: nbformat.NotebookNode, rewrite: Callable[[str], str]) -> None:
    """Apply ``rewrite`` (in place) to every Markdown cell and Markdown output."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = rewrite(cell.source)
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if "text/markdown" in output.get("data", {}):
                output.data["text/markdown"] = rewrite("".join(output.data["text/markdown"]))


def in_book(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A published copy made a page of the book again (``ntkbook build --from-results``, a
    companion from its published run): :func:`doc_link`'s links to the book's sources, which
    lead nowhere inside the rendered book, become ``{doc}`` roles to its pages."""
    notebook = copy.deepcopy(notebook)
    rewrite_markdown(notebook, lambda text: SOURCE_LINK.sub(
        lambda m: f"{{doc}}`{html.unescape(m['text'])} <{m['name']}>`", text))
    return notebook


def resolve_glue(text: str, values: Mapping[str, Mapping[str, Any]], page: str
                 ) -> tuple[str, list[str]]:
    """``text`` (Markdown) with its glue roles replaced by the values glued (``values``:
    :func:`glue_values`), and the glue names it found no value for, each left in the text as
    a visible marker."""
    missing: list[str] = []

    def glue(match: re.Match) -> str:
        key, spec = match["key"], None
        if key not in values and ":" in key:
            key, spec = key.rsplit(":", 1)
        if key not in values:
            missing.append(key)
            return MISSING.format(key)
        try:
            return glue_text(values[key], match["kind"] or "", spec)
        except ValueError as error:
            raise book.BookError(f"{page}: {match[0]}: {error}") from None

    return GLUE_ROLE.sub(glue, text), missing


def resolve_roles(text: str, values: Mapping[str, Mapping[str, Any]], page: str,
                  pages: Mapping[str, str], root: Path | None = None) -> tuple[str, list[str]]:
    """``text`` (Markdown) with its glue roles resolved (:func:`resolve_glue`), its ``{doc}``
    roles replaced by links (:func:`doc_link`) and its ``{ref}`` and ``{numref}`` roles by
    their text; and the glue names it found no value for."""
    def ref(match: re.Match) -> str:
        explicit = EXPLICIT.match(match["body"])
        return explicit["text"] if explicit else match["body"]

    text, missing = resolve_glue(text, values, page)
    text = DOC_ROLE.sub(lambda m: doc_link(m["body"], page, pages, root or book.ROOT), text)
    return REF_ROLE.sub(ref, text), missing


def machine_paths(root: Path | None = None) -> list[tuple[str, str]]:
    """``(absolute path of this machine, what a published notebook says instead)``, longest
    first: the repository (paths in it become relative), the data folder, temporary files,
    the home folder."""
    places = {str(root or book.ROOT): ".", os.environ.get("NTKBOOK_DATA_DIR", ""):
              "<NTKBOOK_DATA_DIR>", tempfile.gettempdir(): "<tmp>", str(Path.home()): "~"}
    paths = {**places, **{os.path.realpath(k): v for k, v in places.items() if k}}
    return sorted(((k.rstrip("/"), v) for k, v in paths.items() if len(k.rstrip("/")) > 1),
                  key=lambda kv: -len(kv[0]))


ABSOLUTE = re.compile(r"(?<![\w.~>-])/(?:work|tmp|root|home|Users|private|var/folders|mnt|scratch)"
                      r"(?:/[^\s'\"`,;:()\[\]<>{}|]*)?")


def without_paths(text: str, root: Path | None = None) -> str:
    """``text`` with this machine's absolute paths made relative to the repository (or
    named by what they are: ``<NTKBOOK_DATA_DIR>``, ``<tmp>``, ``~``), and any other
    absolute path cut to ``…/<its last part>``."""
    for path, instead in machine_paths(root):
        if path in text:
            text = re.sub(r"(?<![\w.~>-])" + re.escape(path) + r"(/|(?![\w.-]))",
                          lambda m, to=instead: "" if to == "." and m[1] else to + m[1], text)
    return ABSOLUTE.sub(lambda m: "…/" + m[0].rstrip("/").rsplit("/", 1)[-1], text)


def _strip_paths(node: Any, root: Path | None) -> Any:
    """``node`` (JSON) with :func:`without_paths` applied to every string, base64 data
    (images, PDF) left alone."""
    if isinstance(node, str):
        return without_paths(node, root)
    if isinstance(node, list):
        return [_strip_paths(item, root) for item in node]
    if isinstance(node, dict):
        return {key: value if _binary(key) else _strip_paths(value, root)
                for key, value in node.items()}
    return node


def one_parameters_cell(notebook: nbformat.NotebookNode, page: str) -> None:
    """Replace the source's ``parameters`` cell and papermill's ``injected-parameters`` cell
    (in place) by one ``parameters`` cell holding the values the run was given, saying how
    to rerun the page with them; it stays hidden in the book (``remove-cell``)."""
    tagged = [[i for i, cell in enumerate(notebook.cells)
               if tag in cell.metadata.get("tags", [])]
              for tag in ("parameters", "injected-parameters")]
    if not tagged[1]:
        return  # not executed with parameters, or already one cell
    injected = notebook.cells[tagged[1][0]]
    given = notebook.metadata.get("papermill", {}).get("parameters", {})
    assignments = [line for line in injected.source.splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    options = " ".join(f"-p {key} {value}" for key, value in given.items())
    profile = given.get("profile")
    said = f'profile "{profile}" (parameters/{profile}.yaml)' if profile else "these values"
    cell = nbformat.v4.new_code_cell(
        "\n".join([f"# Parameters: this run executed the page under {said},",
                    "# injected by papermill in place of the page's defaults. To rerun it so:",
                    f"#   papermill book/{page}.ipynb out.ipynb {options}".rstrip(),
                    *assignments]),
        metadata={"tags": ["parameters", "remove-cell"]})
    first = min(tagged[0] + tagged[1])
    cell.execution_count = injected.get("execution_count")
    cell.outputs = injected.get("outputs", [])
    cell.id = notebook.cells[first].get("id", cell.id)  # the source's, not a new one per run
    notebook.cells = [cell if i == first else c for i, c in enumerate(notebook.cells)
                      if i == first or i not in tagged[0] + tagged[1]]


def readable(notebook: nbformat.NotebookNode, page: str, pages: Mapping[str, str],
             root: Path | None = None) -> nbformat.NotebookNode:
    """A copy of the executed ``book/<page>.ipynb`` that reads on its own: glue roles
    replaced by their values, ``{doc}`` roles by links to the pages published beside it
    (``pages``: name -> title) or the book's sources, ``{ref}``/``{numref}`` by their text;
    one parameters cell; no per-cell timings, no builder paths (nor any absolute path of
    this machine) anywhere. Raises :class:`ntkbook.book.BookError` naming any glue role with
    no value in the notebook (the copy would otherwise show it raw)."""
    notebook = copy.deepcopy(notebook)
    values = glue_values(notebook)
    missing: list[str] = []

    def resolved(text: str) -> str:
        text, absent = resolve_roles(text, values, page, pages, root)
        missing.extend(absent)
        return text

    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.metadata.get("tags") == []:
            cell.metadata.pop("tags")
    rewrite_markdown(notebook, resolved)
    if missing:
        raise book.BookError(f"{page}: no glued value for {', '.join(sorted(set(missing)))}: "
                             f"its published copy would show the raw glue role")
    left = [cell.source for cell in notebook.cells
            if cell.cell_type == "markdown" and GLUE_LEFT.search(cell.source)]
    if left:
        raise book.BookError(f"{page}: a glue role or directive the publisher cannot "
                             f"resolve: {left[0][:200]!r}")
    one_parameters_cell(notebook, page)
    papermill = notebook.metadata.get("papermill")
    if papermill is not None:
        for key in PAPERMILL_SCRATCH:
            papermill.pop(key, None)
        papermill["input_path"] = f"book/{page}.ipynb"
    return nbformat.from_dict(_strip_paths(notebook, root))


def page_titles(notebooks: Mapping[str, nbformat.NotebookNode]) -> dict[str, str]:
    """``{name: title}`` of notebooks published side by side."""
    return {name: title(notebook) or name for name, notebook in notebooks.items()}
