"""Rebuilds do only what changed, and a failed page never replaces its last good copy."""

from __future__ import annotations

import shutil

import nbformat
import pytest

from ntkbook import book

KERNEL = {"name": "python3", "language": "python", "display_name": "Python 3"}


def write_page(root, name: str, source: str) -> None:
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": KERNEL})
    notebook.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(notebook, root / "book" / f"{name}.ipynb")


@pytest.fixture
def tiny_book(tmp_path, monkeypatch):
    """A book of two one-cell pages, rendered by a stand-in for jupyter-book."""
    root = tmp_path / "repo"
    (root / "book").mkdir(parents=True)
    shutil.copy(book.ROOT / "_config.yml", root / "_config.yml")
    shutil.copytree(book.ROOT / "_static", root / "_static")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                   "  - file: book/a\n  - file: book/b\n")
    (root / "book" / "intro.md").write_text("# Intro\n")
    write_page(root, "a", "print('a', 1)")
    write_page(root, "b", "print('b', 1)")
    monkeypatch.setattr(book, "ROOT", root)
    monkeypatch.setattr(book, "RESULTS", root / "results")
    monkeypatch.setattr(book, "_render", lambda staging, output, everything=True: output)
    executed: list[str] = []
    run = book.execute_notebook
    monkeypatch.setattr(book, "execute_notebook", lambda source, *rest: (
        executed.append(source.stem), run(source, *rest))[1])
    return root, tmp_path / "out", executed


def printed(out, name: str) -> str:
    notebook = nbformat.read(out / "source" / "book" / f"{name}.ipynb", 4)
    return notebook.cells[-1].outputs[0]["text"]  # after papermill's injected cell


def test_a_rebuild_executes_only_the_pages_that_changed(tiny_book):
    root, out, executed = tiny_book
    book.build("smoke", output=out, jobs=1)
    assert sorted(executed) == ["a", "b"]
    executed.clear()
    book.build("smoke", output=out, jobs=1)
    assert executed == []  # nothing changed: every executed copy is reused
    write_page(root, "a", "print('a', 2)")
    book.build("smoke", output=out, jobs=1)
    assert executed == ["a"] and printed(out, "a") == "a 2\n" and printed(out, "b") == "b 1\n"
    executed.clear()
    book.build("smoke", output=out, jobs=1, force=True)
    assert sorted(executed) == ["a", "b"]


def test_another_profile_or_code_change_executes_again(tiny_book, monkeypatch):
    root, out, executed = tiny_book
    book.build("smoke", output=out, jobs=1)
    executed.clear()
    monkeypatch.setattr(book, "code_sha256", lambda: "other code")
    book.build("smoke", output=out, jobs=1)
    assert sorted(executed) == ["a", "b"]


def test_a_failed_page_keeps_its_last_good_executed_copy(tiny_book):
    root, out, executed = tiny_book
    book.build("smoke", output=out, jobs=1)
    write_page(root, "b", "raise RuntimeError('broken')")
    with pytest.raises(book.BookError, match=r"b\.failed\.ipynb.*last good executed copy"):
        book.build("smoke", output=out, jobs=1)
    assert printed(out, "b") == "b 1\n"  # the good copy is still there
    assert (out / "source" / "book" / "b.failed.ipynb").is_file()
    write_page(root, "b", "print('b', 3)")
    book.build("smoke", output=out, jobs=1)
    assert printed(out, "b") == "b 3\n"
    assert not (out / "source" / "book" / "b.failed.ipynb").exists()


def test_finished_text_progress_bars_leave_nothing_in_the_outputs():
    bar = {"output_type": "stream", "name": "stderr",
           "text": "stage 2:   0%|   | 0/4\rstage 2:  50%|## | 2/4\r" + " " * 40 + "\r"}
    assert book.settled(bar)["text"].strip() == ""
    kept = {"output_type": "stream", "name": "stdout", "text": "ready in 2.0 s\n"}
    assert book.settled(kept) == kept
