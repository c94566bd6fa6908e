"""Numbers for the book: mean ± s.d. over seeds, markdown tables beside the paper's, and the
claims tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for one value) over seeds."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def seeds_note(n: int) -> str:
    """What the ± in the book's tables means."""
    return f"mean ± sample s.d. over n = {n} seeds"


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


def beside_paper(ours: Sequence[float] | None, paper: tuple[float, float] | None,
                 digits: int = 2) -> list[str]:
    """``[ours, paper]`` cells (mean ± s.d. over seeds; '–' where missing)."""
    return ["–" if ours is None else pm(ours, digits),
            "–" if paper is None else format_pm(*paper, digits)]


def table_beside_paper(rows: dict[str, dict[str, Sequence[float]]],
                       paper_value, columns: dict[str, int]) -> str:
    """A markdown table with, per column, ours and the paper's; rows without any of
    ``columns`` and table columns that are all "–" are left out.

    ``rows[row][column]`` are per-seed values; ``paper_value(row, column)`` the paper's
    (mean, std) or None; ``columns`` maps each column to its decimal digits.
    """
    header = ["network"] + [f"{column} {part}" for column in columns
                            for part in ("(ours)", "(paper)")]
    body = [[name] + [cell for column, digits in columns.items()
                      for cell in beside_paper(values.get(column), paper_value(name, column),
                                               digits)]
            for name, values in rows.items() if any(column in values for column in columns)]
    keep = [0] + [j for j in range(1, len(header)) if any(row[j] != "–" for row in body)]
    return markdown_table([header[j] for j in keep], [[row[j] for j in keep] for row in body])


CLAIMS_KEY = "ntkbook_claims"  # output metadata of a claims table: its rows, as data
DIGITS = {"points": 1, "%": 1, "S": 4, "dS/dt": 4, "tau": 3, "rank": 2, "KSM": 3, "ratio": 3}
VERDICT_ORDER = ("holds", "does not hold", "inconclusive", "not testable at this profile")


def bound(value: float, digits: int) -> str:
    """A bound of an interval (infinite: unbounded, nothing decided)."""
    if np.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:+.{digits}f}"


def interval_text(claim: dict) -> str:
    """``'+2.5 [−1.0, +6.0] points'`` for a claim as ``run.json`` keeps it."""
    if claim.get("estimate") is None:
        return "– (no interval)"
    digits = DIGITS.get(claim["unit"], 3)
    low = claim["low"] if claim["low"] is not None else -np.inf
    high = claim["high"] if claim["high"] is not None else np.inf
    return (f"{claim['estimate']:+.{digits}f} [{bound(low, digits)}, {bound(high, digits)}] "
            f"{claim['unit']}")


def verdict_counts(claims: Sequence[dict]) -> dict[str, int]:
    """How many claims have each verdict (every verdict listed, zeros included)."""
    return {v: sum(c["verdict"] == v for c in claims) for v in VERDICT_ORDER}


def counts_text(claims: Sequence[dict]) -> str:
    """``'3 hold, 1 does not hold, 5 inconclusive, 0 not testable at this profile'``."""
    words = {"holds": ("holds", "hold"), "does not hold": ("does not hold", "do not hold")}
    parts = []
    for verdict, count in verdict_counts(claims).items():
        singular, plural = words.get(verdict, (verdict, verdict))
        parts.append(f"{count} {singular if count == 1 else plural}")
    return f"of {len(claims)} claims, " + ", ".join(parts)


def per_seed_text(claim: dict) -> str:
    """``'; per seed: 30.2, 31.0, 29.8 vs 28.0, 27.5, 29.1'`` (accuracies in %)."""
    sides = [", ".join("–" if v is None else f"{v:.{DIGITS.get(claim['unit'], 3)}f}"
                       for v in values) for values in claim.get("per_seed", {}).values()]
    return f"; per seed: {' vs '.join(sides)}" if sides else ""


def claims_markdown(claims: Sequence[dict], *, page_column: bool = False) -> str:
    """The claims as a table (claim, ours, paper, difference and 95 % interval, verdict),
    then, folded, how each was decided."""
    header = (["page"] if page_column else []) + [
        "claim", "ours (mean over seeds)", "paper", "difference [95 % interval]", "verdict"]
    rows = [([c["page"]] if page_column else []) +
            [f"{c['claim']} ({c['section']})", c["ours"], c["paper"], interval_text(c),
             f"**{c['verdict']}**"] for c in claims]
    details = [f"- *{c['claim']}*: {c['test']}. {c['method']}"
               + (f"; attack: {c['attack']}" if c.get("attack") else "")
               + per_seed_text(c)
               + (f". **Not testable**: {c['reason']}" if c.get("reason") else "")
               + (f". Under PGD alone: {c['pgd_verdict']}" if c.get("pgd_verdict") else "")
               + "." for c in claims]
    return "\n".join([markdown_table(header, rows), "",
                      "<details><summary>How each claim was decided</summary>", "",
                      *details, "", "</details>"])


class ClaimsTable:
    """A page's decided claims: shown as Markdown, and carried as data (the output's
    metadata ``CLAIMS_KEY``, unless ``carry`` is False) in the executed notebook, where
    ``ntkbook publish`` collects every page's claims."""

    def __init__(self, claims: Sequence[dict], carry: bool = True):
        self.claims, self.carry = list(claims), carry

    @property
    def summary(self) -> str:
        """``'of 5 claims, 2 hold, ...'``."""
        return counts_text(self.claims)

    def markdown(self) -> str:
        return claims_markdown(self.claims)

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        return ({"text/markdown": self.markdown()},
                {CLAIMS_KEY: self.claims} if self.carry else {})
