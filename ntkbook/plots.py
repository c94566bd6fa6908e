"""Matplotlib helpers: every figure carries the profile that produced it."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from ntkbook.config import Profile

MODE_COLORS = {"benign": "tab:blue", "adversarial": "tab:red", "flip": "tab:green"}


def figure(cfg: Profile, title: str, ncols: int = 1, width: float = 4.5):
    """A row of ``ncols`` axes titled ``title`` and the profile's label."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 3.6), squeeze=False)
    fig.suptitle(f"{title}  [profile: {cfg.label}]", fontsize=10)
    return fig, axes[0]


def mean_std_line(ax, x: Sequence[float], per_seed: np.ndarray, *, label: str, color: str,
                  linestyle: str = "-") -> None:
    """Mean over seeds (axis 0) as a line, ± one std as a band."""
    mean, std = per_seed.mean(axis=0), per_seed.std(axis=0)
    ax.plot(x, mean, linestyle=linestyle, color=color, label=label, marker=".")
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def clean_and_pgd_legend(ax, colors: dict[str, str]) -> None:
    """A legend of the colours (one per line family) and of the two line styles: solid for
    clean accuracy, dashed for PGD accuracy."""
    handles = [Line2D([], [], color=color, label=label) for label, color in colors.items()]
    handles += [Line2D([], [], color="0.3", linestyle="-", label="clean"),
                Line2D([], [], color="0.3", linestyle="--", label="PGD")]
    ax.legend(handles=handles, fontsize=7, ncol=2)


def stage1_accuracy(cfg: Profile, epochs: Sequence[float], curves: dict[str, np.ndarray]):
    """Clean (solid) and PGD (dashed) test accuracy of each stage-1 mode against epoch."""
    fig, (ax,) = figure(cfg, "Stage 1: test accuracy (solid clean, dashed PGD)")
    for mode, values in curves.items():
        color = MODE_COLORS[mode]
        mean_std_line(ax, epochs, values[..., 0], label=f"{mode} clean", color=color)
        mean_std_line(ax, epochs, values[..., 1], label=f"{mode} PGD", color=color,
                      linestyle="--")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100))
    clean_and_pgd_legend(ax, {mode: MODE_COLORS[mode] for mode in curves})
    fig.tight_layout()
    return fig


def figure_grid(cfg: Profile, title: str, nrows: int, ncols: int, size: float = 1.4):
    """A grid of image axes without ticks, titled with the profile."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + 1.5, size * nrows + 0.6),
                             squeeze=False)
    fig.suptitle(f"{title}  [profile: {cfg.label}]", fontsize=10)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    return fig, axes


KERNEL_PANELS = {"velocity": "kernel velocity dS/dt", "distance_to_final":
                 "kernel distance to final", "effective_rank": "effective rank",
                 "mean_specialization": "mean kernel specialization"}


def kernel_evolution(cfg: Profile, epochs: Sequence[float],
                     statistics: dict[str, dict[str, np.ndarray]]):
    """Figure 1: one panel per statistic, one line per stage-1 mode (mean ± std over seeds).

    ``statistics[mode][name]`` has shape (seeds, len(epochs)), velocity (seeds, len - 1)
    plotted at the later epoch of each gap.
    """
    fig, axes = figure(cfg, "Kernel evolution during stage 1", ncols=len(KERNEL_PANELS),
                       width=3.6)
    for ax, (name, title) in zip(axes, KERNEL_PANELS.items(), strict=True):
        for mode, values in statistics.items():
            x = epochs[1:] if name == "velocity" else epochs
            mean_std_line(ax, x, values[name], label=mode, color=MODE_COLORS[mode])
        ax.set(xlabel="epoch", title=title)
        if "flip" in statistics:
            ax.axvline(cfg.flip_epoch, color="0.7", linewidth=0.8, linestyle=":")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


DYNAMICS_COLORS = {"standard": "black", "linearized": "tab:orange", "centered": "tab:purple"}


def spawn_accuracy(cfg: Profile, spawn_epochs: Sequence[float],
                   accuracy: dict[str, dict[str, np.ndarray]], final: dict[str, np.ndarray]):
    """Figure 2 (a, b): accuracy against spawn epoch, one panel per stage-1 mode.

    ``accuracy[mode][dynamics]`` is (seeds, spawn epochs, 2) of clean and PGD accuracy;
    ``final[mode]`` (seeds, 2) the stage-1 network at its end, drawn as horizontal lines.
    """
    fig, axes = figure(cfg, "Stage 2 from spawn epoch t (solid clean, dashed PGD)",
                       ncols=len(accuracy))
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
    fig.tight_layout()
    return fig


def lines_by_mode(cfg: Profile, title: str, ylabel: str, x: Sequence[float],
                  values: dict[str, dict[str, np.ndarray]], *, xlabel: str = "spawn epoch t"):
    """One panel per stage-1 mode, one line (mean ± std over seeds) per dynamics."""
    fig, axes = figure(cfg, title, ncols=len(values))
    for ax, (mode, per_dynamics) in zip(axes, values.items(), strict=True):
        for dynamics, per_seed in per_dynamics.items():
            mean_std_line(ax, x, per_seed, label=dynamics, color=DYNAMICS_COLORS[dynamics])
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{mode} stage 1")
        ax.legend(fontsize=7)
    fig.tight_layout()
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
    fig.tight_layout()
    return fig


def audit_sweeps(cfg: Profile, audits: dict[str, list[dict]]):
    """The gradient-masking checks as curves, one line per audited network (mean over seeds):
    PGD accuracy against eps (it should fall to about 0) and against PGD iterations (it
    should not rise, and flatten)."""
    fig, (by_eps, by_steps) = figure(cfg, "Robustness audit: PGD accuracy against eps and "
                                          "iterations", ncols=2, width=5.2)
    colors = plt.get_cmap("tab10")
    for i, (label, per_seed) in enumerate(audits.items()):
        for ax, key in ((by_eps, "eps sweep"), (by_steps, "steps sweep")):
            x = [point[0] for point in per_seed[0][key]]
            y = np.mean([[point[1] for point in r[key]] for r in per_seed], axis=0)
            if key == "eps sweep":
                x = [e * 255 for e in x]
            ax.plot(x, y, marker=".", color=colors(i), label=label)
    by_eps.set(xscale="log", xlabel="eps (x 1/255)", ylabel="accuracy (%)", ylim=(0, 100))
    by_eps.axvline(cfg.eps_255, color="0.7", linestyle=":", linewidth=0.8)
    by_steps.set(xscale="log", xlabel="PGD iterations", ylabel="accuracy (%)", ylim=(0, 100))
    by_steps.legend(fontsize=6)
    fig.tight_layout()
    return fig
