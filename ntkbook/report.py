"""Numbers for the book: mean +- std over seeds and markdown tables beside the paper's."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation, as the paper reports over seeds."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std())


def format_pm(mean: float, std: float, digits: int = 2) -> str:
    """``'81.58 ± 0.63'``."""
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def pm(values: Sequence[float], digits: int = 2) -> str:
    """``'81.58 ± 0.63'`` for a list of per-seed values."""
    return format_pm(*mean_std(values), digits)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub/MyST markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def settings_table(settings: dict[str, object]) -> str:
    """Two-column markdown table of parameter names and values."""
    return markdown_table(["parameter", "value"],
                          [(f"`{k}`", v) for k, v in settings.items()])


def verdict(holds: bool) -> str:
    """The word the book prints next to a claim of the paper checked on our numbers."""
    return "holds" if holds else "does not hold"


def beside_paper(ours: Sequence[float] | None, paper: tuple[float, float] | None,
                 digits: int = 2) -> list[str]:
    """``[ours, paper, ours - paper]`` cells (means ± std over seeds; '–' where missing)."""
    cells = ["–" if ours is None else pm(ours, digits),
             "–" if paper is None else format_pm(*paper, digits)]
    if ours is None or paper is None:
        return cells + ["–"]
    return cells + [f"{mean_std(ours)[0] - paper[0]:+.{digits}f}"]


def table_beside_paper(rows: dict[str, dict[str, Sequence[float]]],
                       paper_value, columns: dict[str, int]) -> str:
    """A markdown table with, per column, ours / paper / difference.

    ``rows[row][column]`` are per-seed values; ``paper_value(row, column)`` the paper's
    (mean, std) or None; ``columns`` maps each column to its decimal digits.
    """
    header = ["network"] + [f"{column} {part}" for column in columns
                            for part in ("(ours)", "(paper)", "(diff.)")]
    body = [[name] + [cell for column, digits in columns.items()
                      for cell in beside_paper(values.get(column), paper_value(name, column),
                                               digits)]
            for name, values in rows.items()]
    return markdown_table(header, body)
