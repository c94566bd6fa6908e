"""Matplotlib helpers: every figure carries the profile that produced it.

Spread over seeds is one sample standard deviation (ddof=1); each figure with bands or error
bars says over how many seeds in its suptitle. Figures are sized for a book's ~750 px
content column (7.5 in at 100 dpi) and no legend text is under 8 pt.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from ntkbook.config import Profile

MODE_COLORS = {"benign": "tab:blue", "adversarial": "tab:red", "flip": "tab:green"}
MODE_ZORDER = {"benign": 3}
"""Benign on top: the flip run equals it until the switch and would hide it otherwise."""
LEGEND_FONT = 8
COLUMN_WIDTH = 7.5
"""Inches: a book's content column (~750 px)."""


def seeds_note(groups: Iterable[Sized]) -> str:
    """'mean ± s.d., n = 3 seeds' for per-seed data ``groups`` (the length of each is its
    number of seeds)."""
    counts = sorted({len(group) for group in groups})
    if not counts or counts[-1] < 2:
        return "one seed: no spread shown"
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"mean ± s.d., n = {n} seeds"


def _suptitle(fig, cfg: Profile, title: str, note: str = "") -> None:
    """``title`` wrapped to the figure's width; under it the profile's label and ``note``."""
    tail = "  ·  ".join(filter(None, [f"[profile: {cfg.label}]", note]))
    fig.suptitle(f"{textwrap.fill(title, int(13 * fig.get_figwidth()))}\n{tail}", fontsize=10)


def figure(cfg: Profile, title: str, ncols: int = 1, width: float = 4.5, *, nrows: int = 1,
           height: float = 3.6, note: str = ""):
    """``nrows`` × ``ncols`` axes (a flat array, row by row) titled ``title``, the profile's
    label and ``note`` (e.g. :func:`seeds_note`)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             squeeze=False, layout="constrained")
    _suptitle(fig, cfg, title, note)
    return fig, axes.ravel()


def mean_and_sd(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample s.d. (ddof=1) over axis 0, ignoring NaN; the s.d. is NaN where fewer
    than two values remain, the mean where none does."""
    present = ~np.isnan(values)
    count = present.sum(axis=0)
    mean = _divide(np.where(present, values, 0).sum(axis=0), count, count > 0)
    squares = np.where(present, (values - mean) ** 2, 0).sum(axis=0)
    return mean, np.sqrt(_divide(squares, count - 1, count > 1))


def _divide(numerator: np.ndarray, denominator: np.ndarray, where: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.full(np.shape(numerator), np.nan),
                     where=where)


def mean_std_line(ax, x: Sequence[float], per_seed: np.ndarray, *, label: str, color: str,
                  linestyle: str = "-", geometric: bool = False, zorder: float = 2) -> None:
    """Mean over seeds (axis 0) as a line, ± one sample s.d. as a band (none for one seed).

    ``geometric`` (for log axes): the geometric mean and the band exp(mean(log x) ± sd(log x)),
    always positive. Values ≤ 0 cannot be logged and are left out of their epoch's
    statistics; an epoch with no positive value is a gap, one with a single one has no band.
    """
    values = np.asarray(per_seed, dtype=float)
    if geometric:
        values = np.log(np.where(values > 0, values, np.nan))
    centre, sd = mean_and_sd(values)
    low, high = centre - sd, centre + sd
    if geometric:
        centre, low, high = np.exp(centre), np.exp(low), np.exp(high)
    ax.plot(x, centre, linestyle=linestyle, color=color, label=label, marker=".",
            zorder=zorder)
    if np.isfinite(sd).any():
        ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0, zorder=zorder - 1)


def clean_and_pgd_legend(ax, colors: dict[str, str]) -> None:
    """A legend of the colours (one per line family) and of the two line styles: solid for
    clean accuracy, dashed for PGD accuracy."""
    handles = [Line2D([], [], color=color, label=label) for label, color in colors.items()]
    handles += [Line2D([], [], color="0.3", linestyle="-", label="clean"),
                Line2D([], [], color="0.3", linestyle="--", label="PGD")]
    ax.legend(handles=handles, fontsize=LEGEND_FONT, ncol=2)


def stage1_accuracy(cfg: Profile, epochs: Sequence[float], curves: dict[str, np.ndarray]):
    """Clean (solid) and PGD (dashed) test accuracy of each stage-1 mode against epoch."""
    fig, (ax,) = figure(cfg, "Stage 1: test accuracy (solid clean, dashed PGD)",
                        note=seeds_note(curves.values()))
    for mode, values in curves.items():
        style = dict(color=MODE_COLORS[mode], zorder=MODE_ZORDER.get(mode, 2))
        mean_std_line(ax, epochs, values[..., 0], label=f"{mode} clean", **style)
        mean_std_line(ax, epochs, values[..., 1], label=f"{mode} PGD", linestyle="--", **style)
    ax.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100))
    clean_and_pgd_legend(ax, {mode: MODE_COLORS[mode] for mode in curves})
    return fig


def figure_grid(cfg: Profile, title: str, nrows: int, ncols: int, size: float = 1.4):
    """A grid of image axes without ticks, titled with the profile."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + 1.5, size * nrows + 0.6),
                             squeeze=False, layout="constrained")
    _suptitle(fig, cfg, title)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    return fig, axes


KERNEL_PANELS = {"velocity": "kernel velocity dS/dt (geometric mean)", "distance_to_final":
                 "kernel distance to final", "effective_rank": "effective rank",
                 "mean_specialization": "mean kernel specialization"}
LOG_PANELS = ("velocity",)


def kernel_evolution(cfg: Profile, epochs: Sequence[float],
                     statistics: dict[str, dict[str, np.ndarray]]):
    """Figure 1: a 2 × 2 grid, one panel per statistic, one line per stage-1 mode (mean ± s.d.
    over seeds; geometric on the log-scaled velocity panel). Flip is dashed under a solid
    benign, which it equals until ``cfg.flip_epoch``.

    ``statistics[mode][name]`` has shape (seeds, len(epochs)), velocity (seeds, len - 1)
    plotted at the later epoch of each gap.
    """
    note = seeds_note(values["velocity"] for values in statistics.values())
    fig, axes = figure(cfg, "Kernel evolution during stage 1", ncols=2, nrows=2,
                       width=COLUMN_WIDTH / 2, height=2.9, note=note)
    for ax, (name, title) in zip(axes, KERNEL_PANELS.items(), strict=True):
        if name in LOG_PANELS:
            ax.set_yscale("log")
        for mode, values in statistics.items():
            x = epochs[1:] if name == "velocity" else epochs
            mean_std_line(ax, x, values[name], label=mode, color=MODE_COLORS[mode],
                          linestyle="--" if mode == "flip" else "-",
                          geometric=name in LOG_PANELS, zorder=MODE_ZORDER.get(mode, 2))
        ax.set_title(title, fontsize=9)
        if "flip" in statistics:
            ax.axvline(cfg.flip_epoch, color="0.7", linewidth=0.8, linestyle=":")
    for ax in axes[2:]:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=LEGEND_FONT)
    return fig


DYNAMICS_COLORS = {"standard": "black", "linearized": "tab:orange", "centered": "tab:purple"}


def spawn_accuracy(cfg: Profile, spawn_epochs: Sequence[float],
                   accuracy: dict[str, dict[str, np.ndarray]], final: dict[str, np.ndarray]):
    """Figure 2 (a, b): accuracy against spawn epoch, one panel per stage-1 mode.

    ``accuracy[mode][dynamics]`` is (seeds, spawn epochs, 2) of clean and PGD accuracy;
    ``final[mode]`` (seeds, 2) the stage-1 network at its end, drawn as horizontal lines.
    """
    note = seeds_note(v for per_dynamics in accuracy.values() for v in per_dynamics.values())
    fig, axes = figure(cfg, "Stage 2 from spawn epoch t (solid clean, dashed PGD)",
                       ncols=len(accuracy), note=note)
    for ax, (mode, per_dynamics) in zip(axes, accuracy.items(), strict=True):
        for dynamics, values in per_dynamics.items():
            color = DYNAMICS_COLORS[dynamics]
            mean_std_line(ax, spawn_epochs, values[..., 0], label=f"{dynamics} clean",
                          color=color)
            mean_std_line(ax, spawn_epochs, values[..., 1], label=f"{dynamics} PGD",
                          color=color, linestyle="--")
        for column, style in ((0, "-"), (1, "--")):
            ax.axhline(final[mode][:, column].mean(), color="0.5", linestyle=style,
                       linewidth=0.8)
        ax.set(xlabel="spawn epoch t", ylabel="accuracy (%)", ylim=(0, 100),
               title=f"{mode} stage 1 (grey: its end)")
    clean_and_pgd_legend(axes[0], {d: DYNAMICS_COLORS[d] for d in next(iter(accuracy.values()))})
    return fig


def lines_by_mode(cfg: Profile, title: str, ylabel: str, x: Sequence[float],
                  values: dict[str, dict[str, np.ndarray]], *, xlabel: str = "spawn epoch t"):
    """One panel per stage-1 mode, one line (mean ± s.d. over seeds) per dynamics."""
    note = seeds_note(v for per_dynamics in values.values() for v in per_dynamics.values())
    fig, axes = figure(cfg, title, ncols=len(values), note=note)
    for ax, (mode, per_dynamics) in zip(axes, values.items(), strict=True):
        for dynamics, per_seed in per_dynamics.items():
            mean_std_line(ax, x, per_seed, label=dynamics, color=DYNAMICS_COLORS[dynamics])
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{mode} stage 1")
        ax.legend(fontsize=LEGEND_FONT)
    return fig


def eigen_grid(cfg: Profile, pictures: dict[str, dict[str, np.ndarray]]):
    """Figure 4: rows (kernel, maximised / minimised), columns eigenvectors."""
    rows = [(kernel, direction) for kernel in pictures for direction in ("maximised",
                                                                         "minimised")]
    count = len(next(iter(pictures.values()))["maximised"])
    fig, axes = figure_grid(cfg, "Images aligned with the top NTK eigenvectors", len(rows),
                            count)
    for r, (kernel, direction) in enumerate(rows):
        for i in range(count):
            axes[r, i].imshow(np.clip(pictures[kernel][direction][i], 0, 1))
            if r == 0:
                axes[r, i].set_title(f"eigenvector {i + 1}", fontsize=8)
        axes[r, 0].set_ylabel(f"{kernel}\n{direction[:3]}", fontsize=8)
    return fig


NETWORK_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
NETWORK_LINESTYLES = ("-", "--", "-.", ":")


def _legend_below(fig, handles: Sequence[Any] | None = None, ncol: int = 1) -> None:
    """One legend for the whole figure, under its panels (constrained layout makes room)."""
    kwargs = {} if handles is None else {"handles": handles}
    fig.legend(loc="outside lower center", ncol=ncol, fontsize=LEGEND_FONT, frameon=False,
               **kwargs)


def audit_sweeps(cfg: Profile, audits: dict[str, list[dict]]):
    """The gradient-masking checks as curves, one line per audited network (mean ± s.d. over
    seeds as error bars): PGD accuracy against eps (it should fall to about 0) and against
    PGD iterations (it should not rise, and flatten)."""
    fig, (by_eps, by_steps) = figure(
        cfg, "Robustness audit: PGD accuracy against eps and iterations", ncols=2,
        width=COLUMN_WIDTH / 2, height=3.0 + 0.1 * len(audits),
        note=seeds_note(audits.values()))
    for ax in (by_eps, by_steps):
        ax.set_xscale("log")
    top = 0.0
    for i, (label, per_seed) in enumerate(audits.items()):
        style = dict(marker=NETWORK_MARKERS[i % len(NETWORK_MARKERS)],
                     linestyle=NETWORK_LINESTYLES[i % len(NETWORK_LINESTYLES)],
                     color=plt.get_cmap("tab10")(i % 10))
        top = max(top, _sweep(by_eps, per_seed, "eps sweep", 255, label=label, **style),
                  _sweep(by_steps, per_seed, "steps sweep", 1, **style))
    for ax in (by_eps, by_steps):
        ax.set(ylabel="accuracy (%)", ylim=(0, max(1.1 * top, 1.0)))
        ax.minorticks_off()
    by_eps.set(xlabel="eps (x 1/255; dotted: the profile's)")
    by_eps.axvline(cfg.eps_255, color="0.7", linestyle=":", linewidth=0.8)
    by_steps.set_xlabel("PGD iterations")
    _legend_below(fig, ncol=2)
    return fig


def _sweep(ax, per_seed: list[dict], key: str, scale: float, **style) -> float:
    """One network's ``key`` sweep (x times ``scale``): the mean over seeds with ± s.d. error
    bars, ticks at its x values; returns the top of its highest error bar."""
    x = [point[0] * scale for point in per_seed[0][key]]
    mean, sd = mean_and_sd(np.array([[point[1] for point in r[key]] for r in per_seed],
                                    dtype=float))
    ax.errorbar(x, mean, yerr=None if np.isnan(sd).all() else sd, markersize=4, capsize=2,
                **style)
    ax.set_xticks(x, [f"{v:g}" for v in x])
    return float(np.nanmax(mean + np.nan_to_num(sd)))


def _field(row: Any, name: str) -> Any:
    """``row[name]`` for a mapping, else ``row.name``."""
    return row[name] if isinstance(row, Mapping) else getattr(row, name)


def _interval(row: Any) -> tuple[float, float, float]:
    """(estimate, low, high) as floats, NaN for None."""
    return tuple(_number(_field(row, key)) for key in ("estimate", "low", "high"))


def _number(value: float | None) -> float:
    return np.nan if value is None else float(value)


WRAP = 30


def _rows_figure(cfg: Profile, title: str, labels: Sequence[str], subtitle: str = ""):
    """One axes with a labelled row per entry of ``labels`` (wrapped at ~30 characters, the
    first on top); its height grows with the number of label lines."""
    wrapped = [textwrap.fill(label, WRAP) for label in labels]
    lines = sum(text.count("\n") + 1 for text in wrapped)
    fig, (ax,) = figure(cfg, title, width=COLUMN_WIDTH, height=2.2 + 0.22 * lines)
    ax.set_yticks(range(len(labels)), wrapped, fontsize=LEGEND_FONT)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.grid(axis="x", color="0.9")
    if subtitle:
        ax.set_title(textwrap.fill(subtitle, 100), fontsize=LEGEND_FONT)
    return fig, ax


def _fit_xlim(ax, values: Iterable[float]) -> None:
    """Set the x range to the finite ``values`` plus a margin."""
    finite = [v for v in values if np.isfinite(v)] or [0.0]
    low, high = min(finite), max(finite)
    margin = 0.06 * max(high - low, 1.0)
    ax.set_xlim(low - margin, high + margin)


def _dot_and_whisker(ax, y: float, interval: tuple[float, float, float], *, color: str,
                     marker: str = "o", arrows: bool = False) -> None:
    """``interval`` = (estimate, low, high) as a dot and a whisker at height ``y``; an
    infinite side is drawn to the axis edge as an arrow (``arrows``) or left out. Call after
    the x range is set."""
    estimate, low, high = interval
    if not np.isfinite(estimate):
        return
    edges = ax.get_xlim()
    for end, edge in ((low, edges[0]), (high, edges[1])):
        if np.isfinite(end):
            ax.plot([estimate, end], [y, y], color=color, linewidth=1.5)
        elif arrows:
            ax.annotate("", xy=(edge, y), xytext=(estimate, y),
                        arrowprops=dict(arrowstyle="->", color=color, shrinkA=0, shrinkB=0))
    ax.plot(estimate, y, marker=marker, color=color, linestyle="none", zorder=3)


ATTACK_STYLES = {"PGD": dict(color="tab:blue", marker="o"),
                 "worst case": dict(color="tab:red", marker="s")}


def pgd_against_worst_case(cfg: Profile, rows: dict[str, dict[str, Any]], budget: str):
    """Robust accuracy of each network under the book's PGD and under the worst case of the
    attack ensemble (``budget`` names it), each with its 95 % interval over seeds.

    ``rows[network]["PGD" | "worst case"]`` has ``estimate``, ``low``, ``high`` (%); an
    infinite bound (one seed) draws no whisker on that side.
    """
    fig, ax = _rows_figure(cfg, "Robust accuracy: PGD against the worst-case attack",
                          list(rows), subtitle=budget)
    intervals = [{attack: _interval(r[attack]) for attack in ATTACK_STYLES}
                 for r in rows.values()]
    _fit_xlim(ax, [v for row in intervals for interval in row.values() for v in interval])
    for y, row in enumerate(intervals):
        for offset, (attack, style) in zip((-0.15, 0.15), ATTACK_STYLES.items()):
            _dot_and_whisker(ax, y + offset, row[attack], **style)
    ax.set_xlabel("robust accuracy (%, 95 % interval over seeds)")
    _legend_below(fig, [Line2D([], [], linestyle="-", label=attack, **style)
                       for attack, style in ATTACK_STYLES.items()], ncol=2)
    return fig


VERDICT_COLORS = {"holds": "tab:green", "does not hold": "tab:red",
                  "inconclusive": "tab:orange", "not testable at this profile": "0.55"}
PAPER_LABEL = "the paper's difference (its PGD-100)"
PAPER_STYLE = dict(marker="D", markerfacecolor="none", markeredgecolor="black",
                   linestyle="none")


def forest(cfg: Profile, rows: Sequence[Any], unit: str = "points"):
    """The claims' forest plot: per claim our difference with its 95 % interval, coloured by
    verdict, and the paper's difference (hollow diamond) where given.

    Each row has ``label``, ``estimate``, ``low``, ``high`` (may be ±inf: an arrow to the
    axis edge), ``paper`` (float or None) and ``verdict`` (a key of ``VERDICT_COLORS``).
    """
    fig, ax = _rows_figure(cfg, "Claims: our difference against the paper's",
                          [_field(r, "label") for r in rows])
    papers = [_number(_field(r, "paper")) for r in rows]
    _fit_xlim(ax, [0.0, *papers, *(v for r in rows for v in _interval(r))])
    ax.axvline(0, color="0.4", linewidth=0.8)
    for y, (row, paper) in enumerate(zip(rows, papers, strict=True)):
        _dot_and_whisker(ax, y, _interval(row), color=VERDICT_COLORS[_field(row, "verdict")],
                        arrows=True)
        if np.isfinite(paper):
            ax.plot(paper, y + 0.2, **PAPER_STYLE)
    ax.set_xlabel(f"difference ({unit}), 95 % interval")
    _legend_below(fig, _forest_handles(rows, papers), ncol=3)
    return fig


def _forest_handles(rows: Sequence[Any], papers: Sequence[float]) -> list[Line2D]:
    """Legend entries: the verdicts present, the paper's marker, the unbounded arrow."""
    present = {_field(r, "verdict") for r in rows}
    handles = [Line2D([], [], color=color, marker="o", label=verdict)
               for verdict, color in VERDICT_COLORS.items() if verdict in present]
    if any(np.isfinite(papers)):
        handles.append(Line2D([], [], label=PAPER_LABEL, **PAPER_STYLE))
    intervals = [_interval(r) for r in rows]
    if any(np.isfinite(e) and np.isinf([lo, hi]).any() for e, lo, hi in intervals):
        handles.append(Line2D([], [], color="0.3", marker=r"$\rightarrow$", markersize=10,
                              linestyle="none", label="interval unbounded"))
    return handles
