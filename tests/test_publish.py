"""Publishing a build: results/<profile>/ with run.json, the claims of every page, staleness."""

import html
import json
import re
import tempfile
from pathlib import Path

import nbconvert
import nbformat
import numpy as np
import pytest

from ntkbook import book, claims, config, provenance, publish, report, settings, standalone
from ntkbook.store import Store
from tests.conftest import TINY

RANK = next(c for c in claims.REGISTRY if c.key == "adversarial_kernel_higher_rank")
CLAIM = claims.decide(RANK, [claims.paired(np.array([6.1, 6.3, 6.2]), np.array([5.5, 5.6, 5.4]),
                                           "greater", 2)]).as_dict()


def glued(name, value):
    """The output of ``myst_nb.glue(name, value, display=False)`` in an executed notebook."""
    prefix = "application/papermill.record/"
    return nbformat.v4.new_output("display_data", data={f"{prefix}text/plain": repr(value)},
                                  metadata={"scrapbook": {"name": name, "mime_prefix": prefix}})


def as_executed(notebook, source, target, profile="smoke"):
    """``notebook`` as papermill and ``ntkbook build`` leave it: the injected parameters after
    the source's, both hidden, absolute paths and timings in the metadata, and a value glued
    for every glue role of its Markdown."""
    at = next(i for i, c in enumerate(notebook.cells)
              if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(f'# Parameters\nprofile = "{profile}"\n',
                                         metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(at + 1, injected)
    for cell in notebook.cells:
        cell.metadata["papermill"] = {"duration": 0.1, "start_time": "2026-01-01T00:00:00",
                                      "status": "completed", "exception": False}
        if "parameters" in cell.metadata.get("tags", []) or cell is injected:
            cell.metadata["tags"] = sorted(set(cell.metadata["tags"]) | {"remove-cell"})
        if cell.cell_type == "code":
            cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    notebook.metadata["papermill"] = {"input_path": str(source), "output_path": str(target),
                                      "parameters": {"profile": profile}, "duration": 1.0,
                                      "environment_variables": {}}
    names = sorted({m["key"].split(":")[0] for c in notebook.cells if c.cell_type == "markdown"
                    for m in re.finditer(r"\{glue(?::\w*)?\}`(?P<key>[^`]+)`", c.source)})
    notebook.cells.append(nbformat.v4.new_code_cell(
        "glue(...)", outputs=[glued(name, f"{name} value") for name in names]))
    notebook.cells.append(nbformat.v4.new_code_cell(
        "print(store)", outputs=[nbformat.v4.new_output(
            "stream", name="stdout", text=f"cache in {book.ROOT / '.cache'}\n")]))
    return notebook


def fake_build(tmp_path, cfg, sources):
    """A build folder whose executed notebooks are the sources, one with a claims table."""
    built = tmp_path / "build"
    for document in book.notebooks():
        target = built / "source" / f"{document}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        notebook = nbformat.read(book.ROOT / f"{document}.ipynb", as_version=4)
        if document.endswith("protocol"):
            cell = notebook.cells[-2]
            data, metadata = report.ClaimsTable([CLAIM])._repr_mimebundle_()
            cell.outputs = [nbformat.v4.new_output("display_data", data=data,
                                                   metadata=metadata)]
        nbformat.write(as_executed(notebook, book.ROOT / f"{document}.ipynb", target), target)
    record = provenance.record(cfg, "smoke", 0.0, {"protocol": 1.5}, sources, complete=True)
    (built / book.BUILD_RECORD).write_text(json.dumps(record))
    return built


def test_publish_writes_run_json_with_claims_headline_and_run_facts(tmp_path, monkeypatch):
    cfg = config.load_profile("smoke")
    sources = {name: book.file_sha256(book.ROOT / "book" / f"{name}.ipynb")
               for name in (d.split("/")[-1] for d in settings.pages(cfg, book.notebooks()))}
    built = fake_build(tmp_path, cfg, sources)
    monkeypatch.setattr(publish, "headline", lambda cfg, store: {"benign_final_clean": 1.0})
    target = publish.publish("smoke", store=Store(tmp_path / "cache"), built=built,
                             results=tmp_path / "results")
    run = json.loads((target / "run.json").read_text())
    for key in ("profile", "profile_sha256", "finished", "machine", "versions", "wall_seconds",
                "claims", "headline"):
        assert key in run, key
    assert run["profile_sha256"] == provenance.profile_sha256("smoke")
    assert run["claims"] == [CLAIM]  # each claim names its own page
    assert run["claims"][0]["verdict"] == "holds" and run["claims"][0]["low"] > 0
    assert set(run["versions"]) >= {"python", "jax", "jaxlib", "flax", "optax"}
    assert {p.stem for p in target.glob("*.ipynb")} == set(sources)
    text = (target / "README.md").read_text()
    assert text.index("of 1 claims, 1 holds") < text.index("## The run")  # verdicts first
    assert f"| kernel_evolution | {CLAIM['claim']} ({CLAIM['section']}) | 6.20 vs 5.50 |" in text
    assert "+0.70 [" in text and "**holds**" in text
    assert "Stale" not in text


def test_a_notebook_changed_after_the_run_is_listed_as_stale(tmp_path, monkeypatch, caplog):
    cfg = config.load_profile("smoke")
    sources = {name: "0" * 64 if name == "transferability" else
               book.file_sha256(book.ROOT / "book" / f"{name}.ipynb")
               for name in (d.split("/")[-1] for d in settings.pages(cfg, book.notebooks()))}
    built = fake_build(tmp_path, cfg, sources)
    monkeypatch.setattr(publish, "headline", lambda cfg, store: {})
    target = publish.publish("smoke", store=Store(tmp_path / "cache"), built=built,
                             results=tmp_path / "results")
    assert "`book/transferability.ipynb`" in (target / "README.md").read_text().split(
        "## Stale pages")[1]
    run = json.loads((target / "run.json").read_text())
    assert provenance.stale_notebooks(run) == ["transferability"]


def test_publishing_refuses_a_build_of_other_parameters(tmp_path):
    cfg = config.load_profile("smoke", **TINY)
    built = fake_build(tmp_path, cfg, {})
    record = json.loads((built / book.BUILD_RECORD).read_text())
    (built / book.BUILD_RECORD).write_text(json.dumps({**record, "profile_sha256": "0" * 64}))
    with pytest.raises(book.BookError, match="changed after the last build"):
        publish.publish("smoke", built=built, results=tmp_path / "results")


@pytest.mark.parametrize("run_json", sorted(book.RESULTS.glob("*/run.json")),
                         ids=lambda p: p.parent.name)
def test_a_published_run_matches_its_parameters_file(run_json):
    run = json.loads(run_json.read_text())
    assert run["profile_sha256"] == provenance.profile_sha256(run["profile"]), (
        f"parameters/{run['profile']}.yaml changed after {run_json.parent} was published: "
        f"rebuild and publish it again")
    assert len(run["claims"]) >= 12 and run["wall_seconds"]


def test_the_cpu_run_is_published():
    assert (book.RESULTS / "cpu" / "run.json").is_file()


@pytest.mark.parametrize("run_json", sorted(book.RESULTS.glob("*/run.json")),
                         ids=lambda p: p.parent.name)
def test_the_readme_says_of_a_published_run_what_its_run_json_says(run_json):
    run = json.loads(run_json.read_text())
    start, end = publish.markers(run["profile"])
    readme = publish.README.read_text()
    assert f"{start}\n{publish.summary(run)}\n{end}" in readme, (
        "README.md's summary of the run is stale: run `ntkbook publish`")
    outside = re.sub(r"<!-- published run .*?<!-- end of published run [^ ]+ -->", "",
                     readme, flags=re.S)  # every run's block: two runs share benign numbers
    intro = (book.ROOT / "book" / "intro.md").read_text()
    typed = [f"{run['total_wall_seconds'] / 60:.0f} minutes",
             f"{run['total_wall_seconds'] / 60:.1f} min",
             *(f"{value:.1f} %" for value in run["headline"].values())]
    for text, where in ((outside, "README.md"), (intro, "book/intro.md")):
        for number in typed:
            assert number not in text, f"{where} types {number!r} by hand: take it from the run"
    assert f"{{{{ published_{run['profile'].replace('-', '_')} }}}}" in intro, (
        "book/intro.md's profile table should give this run's cost from its run.json")
    assert re.search(r"\d+ minutes on \d+ cores", book.published_runs()[
        f"published_{run['profile'].replace('-', '_')}"])


def test_the_published_readme_is_generated_from_run_json(tmp_path):
    target = tmp_path / "cpu"
    target.mkdir()
    run = {"profile": "cpu", "claims": [{**CLAIM, "page": "p"}], "machine": {
        "cpu": "X", "cores": 2, "gpus": []}, "total_wall_seconds": 600.0,
        "finished": "2026-12-06T00:00:00", "code": "abc", "headline": {"x": 1.0},
        "profile_sha256": "0" * 64, "versions": {}, "wall_seconds": {}}
    (target / "run.json").write_text(json.dumps(run))
    publish.rewrite_readmes("cpu", results=tmp_path)
    assert (target / "README.md").read_text() == publish.readme(run, [])
    assert "1 holds, 0 do not hold, 0 inconclusive" in publish.summary(run)
    assert "jobs" not in publish.readme(run, [])
    run.update(jobs_seconds=480.0, method="jobs first", wall_seconds={"protocol": 12.0})
    assert "10.0 min: jobs first: jobs 480 s, then protocol 12 s" in publish.readme(run, [])


# Published notebooks that read on their own (issue 20).

PUBLISHED = sorted(book.RESULTS.glob("*/*.ipynb"))
PUBLISHED_IDS = [f"{p.parent.name}/{p.stem}" for p in PUBLISHED]
PAGES = {"robustness_audit": "Is the robustness real?", "protocol": "The training protocol"}


def executed_page(markdown, outputs):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("glue(...)", outputs=outputs),
                      nbformat.v4.new_markdown_cell(markdown)]
    return notebook


def machine_paths_in(text):
    """This machine's absolute paths (the repository, home, temporary folder) in ``text``,
    and any path under the usual roots of a machine's files."""
    found = [p for p in {str(book.ROOT), str(book.ROOT.resolve()), str(Path.home()),
                         tempfile.gettempdir()} if len(p) > 1 and p in text]
    return found + re.findall(r"(?<![\w.~>-])/(?:work|tmp|root|home|Users)/[^\s'\"]*", text)


def test_glue_roles_become_the_values_the_notebook_glued():
    notebook = executed_page(
        "Under the worst case, {glue:text}`claims_holding` of these claims hold; "
        "**{glue:text}`best_row`**, {glue}`gain`, {glue:text}`ratio:.2f`, {glue:md}`table` "
        "and {glue:text}`starred`; $\\epsilon$ = `eps_255`/255 and [a link](x.ipynb) stay.",
        [glued("claims_holding", "3 of 4"), glued("best_row", "K_T adversarial"),
         glued("gain", 25.7), glued("ratio", 0.123456), glued("starred", "a*b_"),
         nbformat.v4.new_output("display_data", data={"application/papermill.record/"
                                                      "text/markdown": "*bold*",
                                                      "application/papermill.record/"
                                                      "text/plain": "<Markdown>"},
                                metadata={"scrapbook": {
                                    "name": "table",
                                    "mime_prefix": "application/papermill.record/"}})])
    text = standalone.readable(notebook, "protocol", PAGES).cells[1].source
    assert text == ("Under the worst case, 3 of 4 of these claims hold; **K_T adversarial**, "
                    "25.7, 0.12, *bold* and a\\*b\\_; $\\epsilon$ = `eps_255`/255 and "
                    "[a link](x.ipynb) stay.")
    assert notebook.cells[1].source.startswith("Under the worst case, {glue:text}")  # a copy


def test_doc_roles_become_links_beside_or_to_the_book_and_refs_their_text():
    notebook = executed_page(
        "See {doc}`robustness_audit`, {doc}`the audit <robustness_audit>`, "
        "{doc}`the book's rule <deciding>`, {doc}`/book/intro` and {ref}`profiles <profiles>`.",
        [])
    text = standalone.readable(notebook, "protocol", PAGES).cells[1].source
    intro = (book.ROOT / "book" / "intro.md").read_text().splitlines()[0][2:]
    assert text == ("See [Is the robustness real?](robustness_audit.ipynb), "
                    "[the audit](robustness_audit.ipynb), "
                    "<a href=\"../../book/deciding.md\">the book's rule</a>, "
                    f"<a href=\"../../book/intro.md\">{html.escape(intro, quote=False)}</a> "
                    "and profiles.")
    with pytest.raises(book.BookError, match="no page"):
        standalone.readable(executed_page("{doc}`nowhere`", []), "protocol", PAGES)


def test_a_published_page_back_in_the_book_links_to_the_books_pages():
    notebook = executed_page("See {doc}`the audit <robustness_audit>` and "
                             "{doc}`the book's rule <deciding>`.",
                             [nbformat.v4.new_output("display_data", data={
                                 "text/markdown": "by {doc}`the rule & its tests <deciding>`"})])
    copy = standalone.readable(notebook, "protocol", PAGES)
    assert "../../book/deciding.md" in copy.cells[1].source  # right from results/<profile>/
    page = standalone.in_book(copy)
    assert page.cells[1].source == ("See [the audit](robustness_audit.ipynb) and "
                                    "{doc}`the book's rule <deciding>`.")
    assert "../../book/deciding.md" in copy.cells[0].outputs[0].data["text/markdown"]
    assert page.cells[0].outputs[0].data["text/markdown"] == \
        "by {doc}`the rule & its tests <deciding>`"
    assert "../../book/" in copy.cells[1].source  # the published copy itself is unchanged


def test_a_glue_role_without_a_value_makes_publish_raise_naming_it(tmp_path, monkeypatch):
    notebook = executed_page("{glue:text}`claims_holding` and {glue:text}`robust_gain`",
                             [glued("claims_holding", "1 of 2")])
    with pytest.raises(book.BookError, match="robust_gain"):
        standalone.readable(notebook, "protocol", PAGES)
    text, missing = standalone.resolve_roles(notebook.cells[1].source, {}, "protocol", PAGES)
    assert missing == ["claims_holding", "robust_gain"]
    assert "**[missing glue value: robust_gain]**" in text and "{glue" not in text

    cfg = config.load_profile("smoke")
    built = fake_build(tmp_path, cfg, {})
    page = built / "source" / "book" / "protocol.ipynb"
    executed = nbformat.read(page, as_version=4)
    for cell in executed.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs
                            if o.get("metadata", {}).get("scrapbook", {}).get("name") !=
                            "adversarial_step"]
    nbformat.write(executed, page)
    (tmp_path / "results" / "smoke").mkdir(parents=True)
    (tmp_path / "results" / "smoke" / "run.json").write_text("{}")
    monkeypatch.setattr(publish, "headline", lambda cfg, store: {})
    with pytest.raises(book.BookError, match="protocol: no glued value for adversarial_step"):
        publish.publish("smoke", store=Store(tmp_path / "cache"), built=built,
                        results=tmp_path / "results")
    assert (tmp_path / "results" / "smoke" / "run.json").read_text() == "{}"  # left as it was


def parameters_cells(notebook):
    return [c for c in notebook.cells
            if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]


def test_publish_writes_readable_notebooks_with_one_parameters_cell(tmp_path, monkeypatch):
    built = fake_build(tmp_path, config.load_profile("smoke"), {})
    monkeypatch.setattr(publish, "headline", lambda cfg, store: {})
    target = publish.publish("smoke", store=Store(tmp_path / "cache"), built=built,
                             results=tmp_path / "results")
    for path in target.glob("*.ipynb"):
        text = path.read_text()
        assert "{glue" not in text and "{doc}`" not in text, path.name
        assert not machine_paths_in(text), path.name
        notebook = nbformat.read(path, as_version=4)
        [cell] = parameters_cells(notebook)
        assert cell.metadata.tags == ["parameters", "remove-cell"]
        assert cell.source.endswith('\nprofile = "smoke"')
        assert f"papermill book/{path.stem}.ipynb out.ipynb -p profile smoke" in cell.source
        assert notebook.metadata.papermill["input_path"] == f"book/{path.stem}.ipynb"
        assert all("papermill" not in c.metadata and "execution" not in c.metadata
                   for c in notebook.cells)
    protocol = (target / "protocol.ipynb").read_text()
    assert "adversarial_step value" in protocol and "cache in .cache" in protocol
    before = {p.name: p.read_text() for p in target.glob("*.ipynb")}
    publish.refresh("smoke", results=tmp_path / "results")
    assert {p.name: p.read_text() for p in target.glob("*.ipynb")} == before  # idempotent


def test_builder_paths_become_relative_or_named():
    root = str(book.ROOT)
    assert standalone.without_paths(f'File "{root}/ntkbook/store.py", line 3 ({root})') == \
        'File "ntkbook/store.py", line 3 (.)'
    kernel = standalone.without_paths(f"in {tempfile.gettempdir()}/ntkbook-kernel-x1/kernel.json")
    assert kernel in ("in <tmp>/ntkbook-kernel-x1/kernel.json", "in …/kernel.json")
    assert standalone.without_paths("/home/someone/data and /work/x/y.py") == "…/data and …/y.py"
    assert standalone.without_paths("https://example.org/tmp/page") == \
        "https://example.org/tmp/page"


@pytest.mark.filterwarnings("ignore:Your element with mimetype")  # glue outputs
@pytest.mark.parametrize("path", PUBLISHED, ids=PUBLISHED_IDS)
def test_a_published_notebook_reads_on_its_own(path):
    """Rendered as a notebook viewer would (nbconvert), with no MyST role left raw, no
    absolute path of the machine that built it, and one parameters cell."""
    notebook = nbformat.read(path, as_version=4)
    body, _ = nbconvert.MarkdownExporter().from_notebook_node(notebook)
    assert "{glue" not in body and "{doc}`" not in body and "{ref}`" not in body
    assert not machine_paths_in(body)
    for cell in notebook.cells:  # the JSON too, base64 images aside
        for output in cell.get("outputs", []):
            output.get("data", {}).pop("image/png", None)
    assert not machine_paths_in(json.dumps(notebook))
    [cell] = parameters_cells(notebook)
    assert cell.metadata.tags == ["parameters", "remove-cell"]
    assert f"papermill book/{path.stem}.ipynb out.ipynb -p profile {path.parent.name}" in \
        cell.source
    assert all("papermill" not in c.metadata and "execution" not in c.metadata
               for c in notebook.cells)


def test_a_setting_published_for_the_first_time_gets_its_readme_block(tmp_path):
    readme = tmp_path / "README.md"
    cpu_start, cpu_end = publish.markers("cpu")
    readme.write_text(f"# Title\n\n{cpu_start}\nthe cpu run\n{cpu_end}\n\n## Next\n")
    run = {"profile": "cpu-eps8", "machine": {"cpu": "a CPU", "cores": 2, "gpus": []},
           "total_wall_seconds": 6000.0, "finished": "2026-12-07T10:00:00+0000",
           "code": "abcdef0123", "headline": {"adversarial_final_robust": 20.0},
           "claims": [{"verdict": "holds", "estimate": 1.0, "per_seed": {"a": [1, 2, 3]}}]}
    publish.write_summary(run, readme)
    publish.write_summary(run, readme)  # again: replaced, not added twice
    text = readme.read_text()
    start, end = publish.markers("cpu-eps8")
    assert text.count(start) == 1
    assert text.index(cpu_end) < text.index(start) < text.index("## Next")
    assert f"{start}\n{publish.summary(run)}\n{end}\n" in text and "the cpu run" in text


def test_a_claim_shown_on_two_pages_is_published_once():
    first = {"page": "protocol", "claim": "a", "verdict": "holds"}
    again = {"page": "protocol", "claim": "a", "verdict": "holds", "shown_on": "higher_eps"}
    other = {"page": "higher_eps", "claim": "b", "verdict": "inconclusive"}
    assert publish.unique_claims([first, other, again]) == [first, other]
