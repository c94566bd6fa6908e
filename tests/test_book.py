"""The book pipeline: papermill execution, error reporting, and the full smoke build."""

import json
import re
import time

import nbformat
import pytest

from ntkbook import book, report

PROTOCOL = book.ROOT / "book" / "protocol.ipynb"
PAGES = [  # (page, figures at least, a number of the paper it must state)
    ("protocol", 1, "51.77"), ("kernel_evolution", 1, "claim"),
    ("linearized_training", 2, "55.46"), ("transferability", 1, "tau"),
    ("sgd_vs_linearized", 0, "62.09"), ("frozen_kernel_adversarial_training", 0, "76.15"),
    ("ntk_eigenvectors", 1, "eigenvalues"), ("robustness_audit", 2, "76.15"),
    ("claims", 1, "55.46"),
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


@pytest.mark.book
def test_smoke_book_builds_with_pages_and_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKBOOK_CACHE_DIR", str(tmp_path / "cache"))
    html = book.build("smoke", output=tmp_path / "book")
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
    executed = nbformat.read(tmp_path / "book" / "source" / "book" / "protocol.ipynb", 4)
    assert all("remove-cell" in c.metadata.get("tags", []) for c in executed.cells
               if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", [])))
    # maths is served by the book itself, not a CDN
    assert 'src="../_static/mathjax/tex-chtml.js' in (html / "book" / "intro.html").read_text()
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    claims = 0
    for path in (tmp_path / "book" / "source" / "book").glob("*.ipynb"):
        outputs = [o for c in nbformat.read(path, 4).cells if c.cell_type == "code"
                   for o in c.outputs]
        text = json.dumps(outputs)
        assert not any(noise in text for noise in NOISE), path.name
        claims += sum(len(o.get("metadata", {}).get(report.CLAIMS_KEY, [])) for o in outputs)
    assert claims == 24  # every page's claims, as data for `ntkbook publish`, once each
    record = json.loads((tmp_path / "book" / book.BUILD_RECORD).read_text())
    assert record["complete"] and set(record["wall_seconds"]) == {p for p, _, _ in PAGES}


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
