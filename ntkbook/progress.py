"""Progress bars as plain text: readable in a terminal, a log file and an executed notebook.

tqdm's notebook bars are widgets, which an executed notebook keeps as frozen "0/4" boxes;
text bars leave only carriage-return text, which the build tidies away once a page has run
(:func:`ntkbook.book._tidy_executed`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm.std import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, unit: str = "it") -> Iterable[T]:
    """``items`` with a text progress bar that disappears when done, redrawn every 5 s."""
    return tqdm(items, desc=desc, unit=unit, leave=False, mininterval=5.0, ascii=True,
                ncols=100)
