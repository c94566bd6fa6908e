"""The book pipeline: papermill execution, error reporting, and the full smoke build."""

import json
import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest

from ntkbook import book, companions, config, report, settings
from ntkbook import claims as ntk_claims
from tests import browser

PROTOCOL = book.ROOT / "book" / "protocol.ipynb"
PAGES = [  # (page, figures at least, a number of the paper it must state)
    ("protocol", 1, "51.77"), ("kernel_evolution", 1, "claim"),
    ("linearized_training", 2, "55.46"), ("transferability", 1, "tau"),
    ("sgd_vs_linearized", 0, "62.09"), ("frozen_kernel_adversarial_training", 0, "76.15"),
    ("ntk_eigenvectors", 1, "eigenvalues"), ("robustness_audit", 2, "76.15"),
    ("claims", 1, "55.46"), ("higher_eps", 2, "49.15"),  # the last: smoke-eps8's page
]
NOISE = ("IProgress not found", "Unable to initialize backend", "Passed unknown parameter")


def test_committed_notebooks_have_no_outputs():
    for path in (book.ROOT / "book").glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


def test_every_notebook_has_a_parameters_cell_validated_next():
    for path in (book.ROOT / "book").glob("*.ipynb"):
        code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert "config.from_notebook(globals())" in code[1].source, path.name


def test_toc_lists_every_page():
    documents = book.toc_documents(book.ROOT / "_toc.yml")
    pages = {p.relative_to(book.ROOT).with_suffix("").as_posix()
             for p in (book.ROOT / "book").iterdir() if p.suffix in (".md", ".ipynb")}
    assert set(documents) == pages


def test_mistyped_parameter_fails_naming_notebook_cell_and_key(tmp_path):
    with pytest.raises(book.BookError, match=r"book/protocol.ipynb failed in cell \d+: "
                                             r"ProfileError: .*'stage2lr'"):
        book.execute_notebook(PROTOCOL, tmp_path / "out.ipynb",
                              {"profile": "smoke", "stage2lr": 0.1})


def test_raising_notebook_names_the_cell(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x = 1"),
                      nbformat.v4.new_code_cell("raise RuntimeError('boom')")]
    source = tmp_path / "broken.ipynb"
    nbformat.write(notebook, source)
    with pytest.raises(book.BookError, match=r"broken.ipynb failed in cell 2: RuntimeError: boom"):
        book.execute_notebook(source, tmp_path / "out.ipynb", {})


def test_a_page_runs_without_kernel_start_up_noise(tmp_path, capfd):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(notebook, tmp_path / "page.ipynb")
    book.execute_notebook(tmp_path / "page.ipynb", tmp_path / "out.ipynb", {})
    assert nbformat.read(tmp_path / "out.ipynb", 4).cells[0].outputs[0]["text"] == "42\n"
    assert "without encryption" not in capfd.readouterr().err  # the TCP warning of ipykernel


def test_a_finished_page_is_shut_down_without_an_interrupt(tmp_path):
    # jupyter_client sends SIGINT before every shutdown; it raced a page's last reply and
    # printed "KeyboardInterrupt caught in kernel". The page records any SIGINT it receives.
    flag = tmp_path / "interrupted"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(
        "import signal\n"
        f"record = lambda *_: open({str(flag)!r}, 'w').close()\n"
        "get_ipython().kernel.post_handler_hook = lambda: signal.signal(signal.SIGINT, record)")]
    nbformat.write(notebook, tmp_path / "page.ipynb")
    book.execute_notebook(tmp_path / "page.ipynb", tmp_path / "out.ipynb", {})
    time.sleep(0.5)
    assert not flag.exists()


def test_pages_are_executed_at_once(tmp_path, monkeypatch):
    # a and b each wait (30 s at most) for the other to start: "together" only if they overlap
    monkeypatch.setattr(book, "ROOT", tmp_path)
    meet = ("import pathlib, time\n"
            "pathlib.Path({flags!r}, {me!r}).touch()\n"
            "deadline = time.time() + 30\n"
            "while not pathlib.Path({flags!r}, {other!r}).exists() and time.time() < deadline:\n"
            "    time.sleep(0.05)\n"
            "print(pathlib.Path({flags!r}, {other!r}).exists())")
    (tmp_path / "book").mkdir()
    (tmp_path / "flags").mkdir()
    for me, other in (("protocol", "protocol"), ("a", "b"), ("b", "a")):
        notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {
            "name": "python3", "language": "python", "display_name": "Python 3"}})
        notebook.cells = [nbformat.v4.new_code_cell(
            meet.format(flags=str(tmp_path / "flags"), me=me, other=other))]
        nbformat.write(notebook, tmp_path / "book" / f"{me}.ipynb")
    seconds = book.execute_pages(["book/a", "book/protocol", "book/b"], tmp_path / "out",
                                 "smoke", jobs=2)
    assert list(seconds) == ["a", "protocol", "b"]
    printed = {name: nbformat.read(tmp_path / "out" / "book" / f"{name}.ipynb", 4)
               .cells[-1].outputs[0]["text"].split() for name in ("a", "b")}
    assert printed == {"a": ["True"], "b": ["True"]}


def test_pages_start_with_the_protocol_then_the_longest_and_the_claims_page_last():
    pages = book.notebooks()
    order = book.start_order(list(reversed(pages)) + ["book/new_page"])
    assert order[0] == "book/protocol" and order[-1] == "book/new_page"
    assert order[-2] == "book/claims"
    assert sorted(order[:-1]) == sorted(pages)
    assert order.index("book/linearized_training") < order.index("book/kernel_evolution")


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory) -> Path:
    """The output folder of one smoke build (its own cache), shared by this file's book tests
    (pytest-xdist's ``--dist loadfile`` keeps them in one worker). ``NTKBOOK_TEST_BOOK=<the
    output folder of an earlier smoke build>`` reuses that build instead (to develop the tests
    quickly; CI never sets it)."""
    given = os.environ.get("NTKBOOK_TEST_BOOK")
    if given:
        return Path(given)
    output = tmp_path_factory.mktemp("smoke") / "book"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NTKBOOK_CACHE_DIR", str(output.parent / "cache"))
        book.build("smoke", output=output, all_settings=True)  # its companions beside it
    return output


@pytest.mark.book
def test_smoke_book_builds_with_pages_and_figures(smoke_book):
    html = smoke_book / "_build" / "html"
    intro = (html / "index.html").read_text()
    assert "smoke" in (html / "book" / "intro.html").read_text()
    assert "intro.html" in intro
    for document in book.toc_documents(book.ROOT / "_toc.yml"):
        page = (html / f"{document}.html").read_text()
        assert "Traceback" not in page and "output traceback" not in page, document
        for image in re.findall(r'<img[^>]+src="([^"]+\.png)"', page):
            assert (html / "book" / image).resolve().is_file(), (document, image)
    for page, figures, paper_number in PAGES:
        text = (html / "book" / f"{page}.html").read_text()
        assert len(re.findall(r'<img[^>]+src="[^"]+\.png"', text)) >= figures, page
        assert "<table" in text and paper_number in text, page  # the paper's number beside ours
        assert "smoke" in text, page
    executed = nbformat.read(smoke_book / "source" / "book" / "protocol.ipynb", 4)
    assert all("remove-cell" in c.metadata.get("tags", []) for c in executed.cells
               if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", [])))
    # maths is served by the book itself, not a CDN
    assert 'src="../_static/mathjax/tex-chtml.js' in (html / "book" / "intro.html").read_text()
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    claims = 0
    smoke = config.load_profile("smoke")
    for document in settings.pages(smoke, book.notebooks()):
        notebook = companions.without_companions(
            nbformat.read(smoke_book / "source" / f"{document}.ipynb", 4))
        outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
        text = json.dumps(outputs)
        assert not any(noise in text for noise in NOISE), document
        claims += sum(len(o.get("metadata", {}).get(report.CLAIMS_KEY, [])) for o in outputs)
    assert claims == len(ntk_claims.for_page(smoke))  # once each
    record = json.loads((smoke_book / book.BUILD_RECORD).read_text())
    assert record["complete"] and set(record["wall_seconds"]) == {p for p, _, _ in PAGES[:-1]}
    assert set(record["companions"]) == {"smoke-cifar100", "smoke-eps8"}


@pytest.mark.book
def test_the_smoke_book_shows_its_companion_settings_beside_its_pages(smoke_book):
    html = smoke_book / "_build" / "html" / "book"
    for page in ("kernel_evolution", "linearized_training", "transferability"):
        text = (html / f"{page}.html").read_text()
        row = text[text.index("CIFAR-100: "):]  # after the page's own sections
        assert "smoke-cifar100" in row and "<img" in row and "<table" in row, page
        assert "{glue" not in text and "missing glue value" not in text, page
    assert "27.35" in (html / "linearized_training.html").read_text()  # CIFAR-100's number
    section9 = (html / "higher_eps.html").read_text()
    assert "smoke-eps8" in section9 and "eps = 4/255" in section9
    claims_page = (html / "claims.html").read_text()
    assert "CIFAR-100: " in claims_page and "eps = 8/255: " in claims_page


@pytest.mark.book
def test_a_companion_book_renders_its_own_pages_and_notes_the_others(smoke_book):
    html = smoke_book.parent / "smoke-eps8" / "_build" / "html" / "book"
    assert "49.15" in (html / "higher_eps.html").read_text()
    other = (html / "transferability.html").read_text()
    assert "the main setting" in other and "<img" not in other


@pytest.mark.book
@pytest.mark.skipif(not (book.RESULTS / "cpu" / "run.json").is_file(), reason="not published")
def test_the_published_cpu_run_renders_offline_in_seconds(tmp_path):
    start = time.perf_counter()
    html = book.build("cpu", output=tmp_path / "cpu", from_results=True)
    assert time.perf_counter() - start < 60
    run = json.loads((book.RESULTS / "cpu" / "run.json").read_text())
    intro = (html / "book" / "intro.html").read_text()
    assert "the published run of profile" in intro and run["finished"][:10] in intro
    assert run["machine"]["cpu"] in intro
    assert "a small CNN (width 16)" in intro
    for page in (html / "book").glob("*.html"):  # a published copy's links to the sources
        assert 'href="../../book/' not in page.read_text(), f"{page.name}: a dead link"
    row = (html / "book" / "kernel_evolution.html").read_text()
    for setting, name in settings.companions("cpu").items():  # named, not computed
        if "kernel_evolution" in setting.appended_to and \
                not (book.RESULTS / name / "run.json").is_file():
            assert f"{setting.title}: " in row and "not published yet" in row


def _browser_pages() -> list[tuple[str, str]]:
    """(name, path in the HTML folder) of every page of ``_toc.yml``, the root also as the
    book's ``index.html``."""
    documents = book.toc_documents(book.ROOT / "_toc.yml")
    return [("index", "index.html")] + [(d.split("/")[-1], f"{d}.html") for d in documents]


BROWSER_PAGES = _browser_pages()
# page name: (the start of its known problems, e.g. "overflow: table", why), a real defect
# someone is fixing: expected to fail (strictly: once fixed, the test fails until removed)
KNOWN_DEFECTS: dict[str, tuple[str, str]] = {}


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """One headless Chromium for this file's browser tests (skipped where it is absent)."""
    reason = browser.unavailable()
    if reason:
        pytest.skip(reason)
    with browser.chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.fixture(scope="module")
def served_book(chromium, smoke_book):
    """The smoke book's HTML folder and the URL it is served at on 127.0.0.1 (``chromium``
    first: without it the tests are skipped before the book is built)."""
    html = smoke_book / "_build" / "html"
    with browser.serve(html) as base:
        yield html, base


def _artifacts() -> Path:
    given = os.environ.get("NTKBOOK_TEST_ARTIFACTS")
    return Path(given) if given else book.ROOT / "_build" / "test-artifacts" / "browser"


@pytest.mark.book
@pytest.mark.parametrize("name, path", BROWSER_PAGES, ids=[n for n, _ in BROWSER_PAGES])
def test_a_page_of_the_smoke_book_in_a_real_browser(chromium, served_book, name, path):
    # loads without console errors, images decode, maths typeset, nothing wider than the
    # column, links resolve: tests/browser.py; a failing page leaves a screenshot behind
    html, base = served_book
    artifacts = _artifacts()
    for stale in (artifacts / f"{name}.png", artifacts / f"{name}.txt"):
        stale.unlink(missing_ok=True)
    problems, shot = browser.check_and_record(chromium, base + path, html, base, artifacts, name)
    known, why = KNOWN_DEFECTS.get(name, ("", ""))
    expected = [p for p in problems if known and p.startswith(known)]
    others = [p for p in problems if p not in expected]
    assert not others, f"{path}: " + "; ".join(others) + f" (screenshot: {shot})"
    if known:
        assert expected, f"{path} has no {known!r} problem any more: remove it from KNOWN_DEFECTS"
        pytest.xfail(f"{why}: " + "; ".join(expected))


@pytest.mark.book
def test_the_browser_check_fails_on_a_table_too_wide_and_keeps_a_screenshot(
        chromium, smoke_book, tmp_path):
    # a copy of a real page with a 30-column table of long numbers in its article
    html = tmp_path / "html"
    shutil.copytree(smoke_book / "_build" / "html", html)
    page = (html / "book" / "protocol.html").read_text()
    cells = "".join(f"<td>{1234567.891 * (i + 1):.3f}</td>" for i in range(30))
    table = ('<div class="pst-scrollable-table-container"><table class="table" id="too-wide">'
             f"<thead><tr>{''.join(f'<th>column {i}</th>' for i in range(30))}</tr></thead>"
             f"<tbody><tr>{cells}</tr><tr>{cells}</tr></tbody></table></div>")
    assert page.count('<article class="bd-article">') == 1
    page = page.replace('<article class="bd-article">', f'<article class="bd-article">{table}')
    (html / "book" / "too_wide.html").write_text(page)
    with browser.serve(html) as base:
        before = browser.check_page(chromium, base + "book/protocol.html", html, base)
        problems, shot = browser.check_and_record(chromium, base + "book/too_wide.html", html,
                                                  base, tmp_path / "artifacts", "too_wide")
    # what the page had already (its own test reports that) aside, the table and only it
    new = [p for p in problems if p.replace("too_wide.html", "protocol.html") not in before]
    assert new and all(p.startswith("overflow: table#too-wide") for p in new), problems
    assert "right of the content column" in new[0], new
    assert shot == tmp_path / "artifacts" / "too_wide.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert "too-wide" in (tmp_path / "artifacts" / "too_wide.txt").read_text()


@pytest.mark.book
def test_the_browser_check_reports_errors_images_maths_and_links(chromium, smoke_book, tmp_path):
    html = tmp_path / "html"
    shutil.copytree(smoke_book / "_build" / "html", html)
    page = (html / "book" / "protocol.html").read_text()
    broken = ('<p>raw $\\alpha + \\beta$ here</p><img src="missing.png" alt="gone">'
              '<a href="nowhere.html">dead</a><a href="#no-such-id">dead fragment</a>'
              '<a href="intro.html#no-such-id">dead fragment elsewhere</a>'
              '<a href="https://example.org/">outside</a>'
              '<script>throw new Error("boom");</script>')
    page = page.replace('<article class="bd-article">', f'<article class="bd-article">{broken}')
    (html / "book" / "broken.html").write_text(page)
    with browser.serve(html) as base:
        problems = browser.check_page(chromium, base + "book/broken.html", html, base)
    report = "\n".join(problems)
    assert "console error" in report and "boom" in report, report
    assert "image not decoded: missing.png" in report, report
    assert "maths: raw TeX in the text: '$\\\\alpha + \\\\beta$'" in report, report
    assert "link 'nowhere.html': no file book/nowhere.html" in report, report
    assert "link '#no-such-id': no id 'no-such-id' on this page" in report, report
    assert "link 'intro.html#no-such-id': no id 'no-such-id' in book/intro.html" in report
    assert "example.org" not in report, report
