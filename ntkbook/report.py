"""Numbers for the book: mean +- std over seeds and markdown tables beside the paper's."""

from __future__ import annotations

import dataclasses
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


CLAIMS_KEY = "ntkbook_claims"  # output metadata of a claims table: its rows, as data


@dataclasses.dataclass(frozen=True)
class Claim:
    """One of the paper's claims checked on our numbers."""

    claim: str
    ours: str
    paper: str
    holds: bool

    def as_dict(self) -> dict[str, str]:
        return {"claim": self.claim, "ours": self.ours, "paper": self.paper,
                "verdict": verdict(self.holds)}


class ClaimsTable:
    """A page's claims: shown as a Markdown table, and carried as data (the output's
    metadata ``CLAIMS_KEY``) in the executed notebook, where ``ntkbook publish`` collects
    every page's claims."""

    def __init__(self, claims: Sequence[Claim]):
        self.claims = list(claims)

    @property
    def holding(self) -> str:
        """``'3 of 4'``: how many of the claims hold."""
        return f"{sum(c.holds for c in self.claims)} of {len(self.claims)}"

    def markdown(self) -> str:
        return markdown_table(["claim", "ours", "paper", "verdict"],
                              [(c.claim, c.ours, c.paper, verdict(c.holds))
                               for c in self.claims])

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        return ({"text/markdown": self.markdown()},
                {CLAIMS_KEY: [c.as_dict() for c in self.claims]})
