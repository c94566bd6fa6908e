"""Matplotlib helpers: every figure carries the profile that produced it."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

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


def stage1_accuracy(cfg: Profile, epochs: Sequence[float], curves: dict[str, np.ndarray]):
    """Clean (solid) and PGD (dashed) test accuracy of each stage-1 mode against epoch."""
    fig, (ax,) = figure(cfg, "Stage 1: test accuracy (solid clean, dashed PGD)")
    for mode, values in curves.items():
        color = MODE_COLORS[mode]
        mean_std_line(ax, epochs, values[..., 0], label=f"{mode} clean", color=color)
        mean_std_line(ax, epochs, values[..., 1], label=f"{mode} PGD", color=color,
                      linestyle="--")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", ylim=(0, 100))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
