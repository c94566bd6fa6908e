"""The figures: sample-s.d. bands, positive log bands, layout and the audit's new plots."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from ntkbook import config, plots  # noqa: E402

INF = float("inf")
NETWORKS = ["standard training", "standard adversarial training",
            "centered, final adversarial kernel", "centered, adversarial kernel at epoch 0.5",
            "adversarial centered, final benign kernel",
            "adversarial centered, final adversarial kernel", "linearized, final benign kernel"]


@pytest.fixture(scope="module")
def cfg() -> config.Profile:
    return config.load_profile("smoke")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def band_vertices(ax) -> np.ndarray:
    """The (x, y) vertices of every band (PolyCollection) drawn on ``ax``."""
    return np.concatenate([path.vertices for c in ax.collections for path in c.get_paths()])


def line(ax, label: str):
    return next(item for item in ax.get_lines() if item.get_label() == label)


def kernel_statistics(epochs: list[float], seeds: int = 3) -> dict[str, dict[str, np.ndarray]]:
    """Flip equal to benign throughout (the worst case for hiding); velocity whose mean - s.d.
    is negative at every epoch, with one zero."""
    velocity = np.tile([[0.01], [0.02], [1.0]], len(epochs) - 1)[:seeds]
    velocity[0, 0] = 0.0
    one = {"velocity": velocity, **{name: np.ones((seeds, len(epochs)))
                                    for name in ("distance_to_final", "effective_rank",
                                                 "mean_specialization")}}
    return {"benign": one, "adversarial": one, "flip": one}


def test_bands_are_one_sample_standard_deviation_and_absent_for_one_seed(cfg):
    _, ax = plt.subplots()
    plots.mean_std_line(ax, [0, 1], np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]),
                        label="x", color="k")
    y = band_vertices(ax)[:, 1]
    assert y.min() == pytest.approx(0.0) and y.max() == pytest.approx(2.0)  # sd = 1, not 0.82
    fig = plots.stage1_accuracy(cfg, [0, 1, 2], {"benign": np.ones((1, 3, 2))})
    assert not fig.axes[0].collections
    assert "one seed" in fig._suptitle.get_text()


def test_log_panel_draws_a_positive_geometric_band(cfg):
    epochs = list(cfg.checkpoint_epochs)
    fig = plots.kernel_evolution(cfg, epochs, kernel_statistics(epochs))
    velocity = fig.axes[0]
    y = band_vertices(velocity)[:, 1]
    assert np.isfinite(y).all() and (y > 0).all()
    assert velocity.get_yscale() == "log" and "geometric mean" in velocity.get_title()
    geometric = np.exp(np.mean(np.log([0.01, 0.02, 1.0])))
    assert line(velocity, "benign").get_ydata()[1] == pytest.approx(geometric)
    assert line(velocity, "benign").get_ydata()[0] == pytest.approx(np.sqrt(0.02))  # 0 left out


def test_kernel_evolution_is_a_two_by_two_grid_with_benign_visible_over_flip(cfg):
    epochs = list(cfg.checkpoint_epochs)
    fig = plots.kernel_evolution(cfg, epochs, kernel_statistics(epochs))
    assert len(fig.axes) == 4
    assert {ax.get_subplotspec().rowspan.start for ax in fig.axes} == {0, 1}
    assert f"[profile: {cfg.label}]" in fig._suptitle.get_text()
    assert "n = 3 seeds" in fig._suptitle.get_text()
    for ax in fig.axes:
        benign, flip = line(ax, "benign"), line(ax, "flip")
        assert benign.get_zorder() > flip.get_zorder() and flip.get_linestyle() == "--"
        assert min(t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()) >= 8
    assert all(t.get_fontsize() >= 8 for t in fig.axes[0].get_legend().get_texts())


def sweeps(top: float, seeds: int = 3) -> dict[str, list[dict]]:
    rng = np.random.default_rng(0)
    return {label: [{"eps sweep": [(e / 255, rng.uniform(0, top)) for e in (2, 4, 8, 127.5)],
                     "steps sweep": [(s, rng.uniform(0, top)) for s in (10, 20, 40)]}
                    for _ in range(seeds)] for label in NETWORKS}


def test_audit_sweeps_fit_the_data_with_a_readable_legend_below(cfg):
    fig = plots.audit_sweeps(cfg, sweeps(36.0))
    fig.canvas.draw()
    for ax in fig.axes:
        assert 36.0 <= ax.get_ylim()[1] < 100
        assert len(ax.containers) == len(NETWORKS)
        assert all(c.has_yerr for c in ax.containers)
    styles = {(c.lines[0].get_marker(), c.lines[0].get_linestyle())
              for c in fig.axes[0].containers}
    assert len(styles) == len(NETWORKS)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == NETWORKS
    assert all(t.get_fontsize() >= 8 for t in legend.get_texts())
    box = legend.get_window_extent()
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)
    assert not any(ax.get_legend() for ax in fig.axes)


def test_no_legend_text_is_under_8_points(cfg):
    per_dynamics = {"standard": np.ones((2, 3)), "linearized": np.ones((2, 3))}
    figures = [plots.stage1_accuracy(cfg, [0, 1, 2], {"benign": np.ones((2, 3, 2))}),
               plots.lines_by_mode(cfg, "t", "y", [0, 1, 2], {"benign": per_dynamics})]
    for fig in figures:
        texts = [t for ax in fig.axes for t in ax.get_legend().get_texts()]
        assert texts and all(t.get_fontsize() >= 8 for t in texts)


def interval(estimate: float, half: float) -> SimpleNamespace:
    return SimpleNamespace(estimate=estimate, low=estimate - half, high=estimate + half)


def test_pgd_against_worst_case_has_a_row_per_network_and_handles_one_seed(cfg):
    rows = {label: {"PGD": interval(30.0 - i, 2.0), "worst case": interval(20.0 - i, 3.0)}
            for i, label in enumerate(NETWORKS)}
    rows[NETWORKS[0]]["worst case"] = SimpleNamespace(estimate=25.0, low=-INF, high=INF)
    budget = "worst case of PGD-10, APGD-CE-20, Square-300 on 100 images"
    fig = plots.pgd_against_worst_case(cfg, rows, budget)
    (ax,) = fig.axes
    assert f"[profile: {cfg.label}]" in fig._suptitle.get_text()
    assert budget in ax.get_title().replace("\n", " ")
    assert len(ax.get_yticks()) == len(NETWORKS)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert all(len(part) <= 30 for text in labels for part in text.split("\n"))
    low, high = ax.get_xlim()
    assert np.isfinite([low, high]).all() and low < 17 - 3 and high > 30 + 2
    assert ax.get_xlabel() == "robust accuracy (%, 95 % interval over seeds)"
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {"PGD", "worst case"}


def claim(label: str, verdict: str, low: float = -1.0, high: float = 1.0,
          paper: float | None = 2.0) -> dict:
    return dict(label=label, estimate=0.5, low=low, high=high, paper=paper, verdict=verdict)


def test_forest_colours_rows_by_verdict_and_draws_unbounded_intervals(cfg):
    rows = [claim("under the worst case, centered training is more robust", "holds"),
            claim("the kernel converges early", "does not hold", low=-INF, high=INF),
            claim("the velocity spikes after the switch", "inconclusive", paper=None),
            claim("higher effective rank", "not testable at this profile", high=INF)]
    fig = plots.forest(cfg, rows, unit="points")
    (ax,) = fig.axes
    assert f"[profile: {cfg.label}]" in fig._suptitle.get_text()
    assert len(ax.get_yticks()) == len(rows)
    assert np.isfinite(ax.get_xlim()).all() and ax.get_xlim()[0] < -1 < 2 < ax.get_xlim()[1]
    dots = [item for item in ax.get_lines() if item.get_marker() == "o"]
    assert sorted(d.get_ydata()[0] for d in dots) == list(range(len(rows)))
    assert len({to_rgba(d.get_color()) for d in dots}) == len(rows)
    assert len([item for item in ax.get_lines() if item.get_marker() == "D"]) == 3
    assert len([t for t in ax.texts if t.arrow_patch is not None]) == 3
    assert ax.get_xlabel() == "difference (points), 95 % interval"
    legend = {t.get_text() for t in fig.legends[0].get_texts()}
    assert set(plots.VERDICT_COLORS) | {plots.PAPER_LABEL, "interval unbounded"} <= legend


def test_forest_grows_with_its_rows(cfg):
    def height(count: int) -> float:
        rows = [claim(f"claim {i}", "holds") for i in range(count)]
        return plots.forest(cfg, rows).get_figheight()

    assert height(8) > height(2)
