"""The registry of the paper's claims, each decided on our numbers by :mod:`ntkbook.stats`.

A :class:`Claim` carries the paper's statement, its section, the paper's numbers, the test
(statistic, control, direction and threshold) and a ``measure`` that turns cached results
(:class:`ntkbook.evidence.Sources`) into one or more :class:`Comparison` s; several
comparisons form a conjunction (every one must hold). A comparison may carry the reason its
precondition is unmet (a model it rests on did not learn): the verdict is then "not testable
at this profile", with the numbers still shown. Robust accuracies are compared under the
strongest attack measured for both networks (the audit's worst case where it exists).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ntkbook import kernel_study, paper, radius, report, settings, stats
from ntkbook.config import MODEL_NAMES, Profile
from ntkbook.evidence import CLEAN, PGD, PGD_AUDITED, WORST, Net, Sources, accuracy, describe
from ntkbook.experiment import NetworkId
from ntkbook.kernel_study import across_seeds
from ntkbook.store import Store

BOOK = Path(__file__).resolve().parents[1] / "book"
LEARNED_OVER_CHANCE = 2.0  # a model "learned" if its mean clean accuracy is >= 2x chance
TAU_NEGLIGIBLE = 0.1  # "barely transfers": tau below this
CONVERGED_FRACTION = 0.25  # "close to the final kernel": a quarter of its initial distance


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` (paired by seed, and by image for (seeds, images) booleans), or
    ``a`` alone against ``threshold`` when ``b`` is None."""

    a: np.ndarray
    b: np.ndarray | None
    expect: str  # "greater" | "less"
    ours: str
    threshold: float = 0.0
    attack: str | None = None  # which attack measured the robust accuracies
    unmet: str | None = None  # why the precondition fails
    paper: float | None = None  # the paper's value of the same difference
    pgd: Comparison | None = None  # the same comparison under PGD alone, when decided otherwise
    # a measured by a stronger attack than b (a lower bound on a, an upper bound on b): their
    # difference can only show a > b, so a difference below the threshold is inconclusive
    one_sided: bool = False

    def interval(self) -> stats.Interval:
        sides = [self.a] if self.b is None else [self.a, self.b]
        if self.unmet and not all(np.isfinite(np.asarray(v, float)).all() for v in sides):
            return stats.Interval(np.nan, -np.inf, np.inf, 0.95, len(self.a), None,
                                  f"no interval: {self.unmet}")
        return stats.mean(self.a) if self.b is None else stats.difference(self.a, self.b)

    def verdict(self) -> str:
        if self.unmet:
            return stats.NOT_TESTABLE
        verdict = stats.verdict(self.interval(), self.expect, self.threshold)
        return stats.INCONCLUSIVE if self.one_sided and verdict == stats.DOES_NOT_HOLD \
            else verdict


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the paper as the book tests it."""

    key: str
    page: str
    section: str
    statement: str
    paper: str
    test: str
    unit: str
    measure: Callable[[Sources], list[Comparison]]
    applies: Callable[[Profile], bool] = lambda cfg: True
    # the paper's numbers in its other settings ({setting name: text}: "cifar100", "eps8")
    paper_elsewhere: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def paper_for(self, cfg: Profile) -> str:
        """What the paper reports in the profile's setting."""
        setting = settings.of(cfg)
        if setting == settings.MAIN:
            return self.paper
        if "no number" in self.paper:  # a trend the paper's figures show in every setting
            return self.paper_elsewhere.get(setting.name, self.paper)
        return self.paper_elsewhere.get(setting.name, f"{self.paper} at CIFAR-10, eps = 4/255 "
                                                      f"(not reported for {setting.title})")


@dataclasses.dataclass(frozen=True)
class Result:
    """A claim decided: the verdict and the comparison that decided it."""

    claim: Claim
    verdict: str
    deciding: Comparison
    interval: stats.Interval
    ours: str
    paper: str = ""  # the paper's numbers in the setting decided (default: the claim's)

    @property
    def reason(self) -> str | None:
        return self.deciding.unmet

    @property
    def pgd_verdict(self) -> str | None:
        """The verdict PGD alone would give, where the worst case decided."""
        return None if self.deciding.pgd is None else self.deciding.pgd.verdict()

    def as_dict(self) -> dict:
        """The claim as ``run.json`` keeps it."""
        c, i = self.claim, self.interval
        per_seed = {side: _per_seed(values) for side, values in
                    (("a", self.deciding.a), ("b", self.deciding.b)) if values is not None}
        return {"key": c.key, "page": c.page, "section": c.section, "claim": c.statement,
                "ours": self.ours, "paper": self.paper or c.paper, "verdict": self.verdict,
                "estimate": _finite(i.estimate), "low": _finite(i.low), "high": _finite(i.high),
                "unit": c.unit, "n_seeds": i.n_seeds, "n_images": i.n_images,
                "method": i.method, "test": c.test, "attack": self.deciding.attack,
                "threshold": self.deciding.threshold, "expect": self.deciding.expect,
                "paper_difference": self.deciding.paper, "reason": self.reason,
                "pgd_verdict": self.pgd_verdict, "per_seed": per_seed}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _per_seed(values: np.ndarray) -> list[float | None]:
    array = np.asarray(values)
    per_seed = accuracy(array) if array.dtype == bool else array
    return [round(float(v), 6) if np.isfinite(v) else None for v in per_seed]


def _margin(c: Comparison, interval: stats.Interval) -> float:
    """How far the interval clears the threshold on the claimed side (negative: it does not)."""
    return interval.low - c.threshold if c.expect == "greater" else c.threshold - interval.high


def decide(claim: Claim, comparisons: Sequence[Comparison]) -> Result:
    """The conjunction of ``comparisons``; the deciding one is the first unmet precondition,
    else the first that fails, else the first inconclusive, else the narrowest margin."""
    verdicts = [c.verdict() for c in comparisons]
    verdict = stats.combine(verdicts)
    if verdict == stats.HOLDS:
        index = min(range(len(comparisons)),
                    key=lambda k: _margin(comparisons[k], comparisons[k].interval()))
    else:
        index = verdicts.index(verdict)
    deciding = comparisons[index]
    ours = "; ".join(c.ours for c in comparisons)
    return Result(claim, verdict, deciding, deciding.interval(), ours)


# --- the comparisons the claims are made of --------------------------------------------------

def learned(sources: Sources, net: NetworkId, name: str) -> str | None:
    """None if ``net`` learned (mean clean accuracy >= 2x chance), else why not."""
    cfg = sources.cfg
    floor = LEARNED_OVER_CHANCE * 100.0 / cfg.num_classes
    clean = float(accuracy(sources.correct(net, CLEAN)).mean())
    if clean >= floor:
        return None
    return (f"{name} did not learn: clean accuracy {clean:.1f} % is below {floor:.0f} % "
            f"({LEARNED_OVER_CHANCE:g}x chance)")


def compare_accuracy(sources: Sources, a: NetworkId, b: NetworkId, expect: str, *,
                     attack: str, names: tuple[str, str], b_attack: str | None = None,
                     must_learn: Sequence[int] = (0, 1), paper_difference: float | None = None,
                     unmet: str | None = None) -> Comparison:
    """Accuracy of ``a`` under ``attack`` against ``b`` under ``b_attack`` (default the same),
    paired by seed and image, with the PGD-only comparison beside it when the worst case
    decides; ``must_learn`` names the sides (0: a, 1: b) whose clean accuracy must show that
    they learned. Giving ``b`` a weaker attack (PGD on the same audited images) than ``a``
    only makes "a is more robust" harder to show, and can never show the opposite: such a
    comparison holds or is inconclusive (:attr:`Comparison.one_sided`)."""
    if b_attack not in (None, attack) and expect != "greater":
        raise ValueError("a weaker attack on b can only test that a is greater")
    nets = (a, b)
    reasons = [learned(sources, nets[k], names[k]) for k in must_learn]
    unmet = unmet or next((r for r in reasons if r), None)

    def under(a_attack: str, b_attack: str) -> Comparison:
        x, y = sources.correct(a, a_attack), sources.correct(b, b_attack)
        which = a_attack if a_attack == b_attack else f"{a_attack} vs {b_attack}"
        return Comparison(x, y, expect, f"{describe(x)} vs {describe(y)} ({which})",
                          attack=which, unmet=unmet, paper=paper_difference,
                          one_sided=a_attack != b_attack)

    decided = under(attack, b_attack or attack)
    return dataclasses.replace(decided, pgd=under(PGD, PGD)) if attack == WORST else decided


def paired(a: np.ndarray, b: np.ndarray, expect: str, digits: int = 4, **kw) -> Comparison:
    """Per-seed values ``a`` against ``b``."""
    return Comparison(np.asarray(a, float), np.asarray(b, float), expect,
                      f"{describe(a, digits)} vs {describe(b, digits)}", **kw)


def _end(cfg: Profile) -> float:
    return float(cfg.stage1_epochs)


def _has(*modes: str) -> Callable[[Profile], bool]:
    return lambda cfg: set(modes) <= set(cfg.modes)


def _paper(cfg: Profile, table: str, first: tuple[str, str], second: tuple[str, str]
           ) -> float | None:
    """Difference of two of the paper's means (Tables 1-2), where it reports both."""
    values = [paper.table_value(cfg, table, *cell) for cell in (first, second)]
    return None if None in values else round(values[0][0] - values[1][0], 2)


def _reported(cfg: Profile, first: str, second: str) -> float | None:
    """Difference of two of the paper's headline means (:data:`paper.REPORTED`)."""
    values = paper.REPORTED.get((cfg.dataset, cfg.eps_255), {})
    return (round(values[first][0] - values[second][0], 2)
            if first in values and second in values else None)


def _early(cfg: Profile) -> float:
    """The profile's counterpart of the paper's spawn epoch 10."""
    return cfg.sgd_comparison_spawn_epoch


# --- section 4: the protocol's networks ----------------------------------------------------

def _adversarial_buys_robustness(src: Sources) -> list[Comparison]:
    end = _end(src.cfg)
    return [compare_accuracy(src, Net("adversarial", end), Net("benign", end), "greater",
                             attack=PGD, names=("adversarial training", "benign training"))]


# --- section 3: kernels ---------------------------------------------------------------------

def _converges_early(mode: str) -> Callable[[Sources], list[Comparison]]:
    def measure(src: Sources) -> list[Comparison]:
        d = src.kernel_statistics()[mode]["distance_to_final"]
        early = kernel_study.early_index(src.cfg)
        return [Comparison(d[:, early], CONVERGED_FRACTION * d[:, 0], "less",
                           f"{describe(d[:, early], 4)} at epoch "
                           f"{src.cfg.checkpoint_epochs[early]:g} vs a quarter of "
                           f"{describe(d[:, 0], 4)} at 0")]
    return measure


def _distinct_kernel(src: Sources) -> list[Comparison]:
    d = src.final_kernel_distances()
    across = (d["benign", "adversarial"] + d["adversarial", "benign"]) / 2
    within = (d["benign", "benign"] + d["adversarial", "adversarial"]) / 2
    excess = stats.pair_pseudo_values(across - within)
    ours = f"{describe(across_seeds(across), 4)} vs {describe(across_seeds(within), 4)}"
    return [Comparison(excess, None, "greater", ours)]


def _benign_kernel_nearer_adversarial(src: Sources) -> list[Comparison]:
    end = _end(src.cfg)
    benign = Net("benign", end)
    return [paired(src.kernel_distance(benign, Net("adversarial", end)),
                   src.kernel_distance(benign, Net("benign", 0.0)), "less")]


def _flip_spike(src: Sources) -> list[Comparison]:
    cfg, statistics = src.cfg, src.kernel_statistics()
    gap = list(cfg.checkpoint_epochs)[1:].index(float(cfg.flip_epoch + 1))
    flip, benign = (statistics[m]["velocity"][:, gap] for m in ("flip", "benign"))
    return [paired(flip, benign, "greater")]


def _flip_settles_at_benign_kernel(src: Sources) -> list[Comparison]:
    cfg, statistics = src.cfg, src.kernel_statistics()
    at = list(cfg.checkpoint_epochs).index(float(cfg.flip_epoch))
    flip, benign = (statistics[m]["distance_to_final"][:, at] for m in ("flip", "benign"))
    return [paired(flip, benign, "greater")]


def _flip_applies(cfg: Profile) -> bool:
    return _has("flip", "benign")(cfg) and float(cfg.flip_epoch + 1) in cfg.checkpoint_epochs


def _final_statistic(name: str, expect: str) -> Callable[[Sources], list[Comparison]]:
    def measure(src: Sources) -> list[Comparison]:
        s = src.kernel_statistics()
        return [paired(s["adversarial"][name][:, -1], s["benign"][name][:, -1], expect, 3)]
    return measure


# --- section 4: linearized and centered training ------------------------------------------

def _centered_beats_standard(epoch: Callable[[Profile], float], key: str
                             ) -> Callable[[Sources], list[Comparison]]:
    def measure(src: Sources) -> list[Comparison]:
        cfg = src.cfg
        return [compare_accuracy(src, Net("adversarial", epoch(cfg), "centered"),
                                 Net("adversarial", _end(cfg)), "greater", attack=WORST,
                                 names=("the centered model", "standard adversarial training"),
                                 paper_difference=_reported(cfg, key,
                                                            "adversarial_training_robust"))]
    return measure


def _centered_costs_clean_accuracy(src: Sources) -> list[Comparison]:
    end = _end(src.cfg)
    return [compare_accuracy(
        src, Net("adversarial", end, "centered"), Net("adversarial", end), "less", attack=CLEAN,
        names=("the centered model", "standard adversarial training"),
        paper_difference=_paper(src.cfg, "table2", ("K_T adversarial", "benign clean"),
                                ("standard adversarial training", "benign clean")))]


def _centered_adversarial_kernel_peaks_early(src: Sources) -> list[Comparison]:
    cfg = src.cfg
    return [compare_accuracy(src, Net("adversarial", _early(cfg), "centered"),
                             Net("adversarial", _end(cfg), "centered"), "greater", attack=WORST,
                             names=("the early centered model", "the final centered model"),
                             paper_difference=_reported(cfg,
                                                        "centered_spawn10_adversarial_robust",
                                                        "centered_final_adversarial_robust"))]


def _centered_beats_linearized(mode: str) -> Callable[[Sources], list[Comparison]]:
    def measure(src: Sources) -> list[Comparison]:
        end = _end(src.cfg)
        return [compare_accuracy(src, Net(mode, end, "centered"), Net(mode, end, "linearized"),
                                 "greater", attack=WORST, b_attack=PGD_AUDITED,
                                 names=("the centered model", "the linearized model"))]
    return measure


def _benign_centered_beats_standard(src: Sources) -> list[Comparison]:
    end = _end(src.cfg)
    return [compare_accuracy(src, Net("benign", end, "centered"), Net("benign", end), "greater",
                             attack=WORST, b_attack=PGD_AUDITED,
                             names=("the centered model", "benign training"))]


def _benign_kernel_gains_robustness(src: Sources) -> list[Comparison]:
    cfg = src.cfg
    reported = paper.REPORTED.get((cfg.dataset, cfg.eps_255), {})
    final = reported.get("centered_final_benign_robust")
    initial = paper.table_value(cfg, "table2", "K_0 (initialisation)", "benign robust")
    return [compare_accuracy(
        src, Net("benign", _end(cfg), "centered"), Net("benign", 0.0, "centered"), "greater",
        attack=WORST, names=("centered training on the final benign kernel",
                             "centered training on the initial kernel"),
        paper_difference=None if final is None or initial is None
        else round(final[0] - initial[0], 2))]


def _magnitude_peaks(mode: str) -> Callable[[Sources], list[Comparison]]:
    def measure(src: Sources) -> list[Comparison]:
        spawn = list(src.cfg.spawn_epochs)
        m = src.relative_magnitude()[mode]
        mid = spawn.index(_early(src.cfg))
        height = m[:, mid] - np.maximum(m[:, 0], m[:, -1])
        return [Comparison(height, None, "greater",
                           f"{describe(m[:, mid], 3)} at t = {spawn[mid]:g} vs "
                           f"{describe(m[:, 0], 3)} at t = {spawn[0]:g} and "
                           f"{describe(m[:, -1], 3)} at t = {spawn[-1]:g}")]
    return measure


def _peak_applies(cfg: Profile) -> bool:
    return _early(cfg) in list(cfg.spawn_epochs)[1:-1]


# --- section 5: transferability -------------------------------------------------------------

def _before_end(cfg: Profile) -> np.ndarray:
    """Spawn epochs before the end of stage 1 (at the end, standard dynamics is the target
    itself and tau = 1 by construction)."""
    return np.array(cfg.spawn_epochs) < cfg.stage1_epochs


def _centered_transfers_less(mode: str) -> Callable[[Sources], list[Comparison]]:
    def measure(src: Sources) -> list[Comparison]:
        tau, keep = src.transferability()[mode], _before_end(src.cfg)
        with warnings.catch_warnings():  # a seed without a defined tau: NaN, said below
            warnings.simplefilter("ignore", RuntimeWarning)
            centered, standard = (np.nanmean(tau[d][:, keep], axis=1)
                                  for d in ("centered", "standard"))
        defined = np.isfinite(centered).all() and np.isfinite(standard).all()
        unmet = None if defined else "tau is undefined (the target resists its own PGD examples)"
        return [paired(centered, standard, "less", 3, unmet=unmet)]
    return measure


def _initial_kernel_does_not_transfer(mode: str) -> Callable[[Sources], list[Comparison]]:
    def measure(src: Sources) -> list[Comparison]:
        initial = src.transferability()[mode]["centered"][:, 0]
        return [Comparison(initial, None, "less", f"tau {describe(initial, 3)}",
                           threshold=TAU_NEGLIGIBLE)]
    return measure


# --- section 6: frozen kernel or SGD ----------------------------------------------------------

def _table1_nets(cfg: Profile) -> dict[str, NetworkId]:
    t = _early(cfg)
    nets = {"parent": Net("adversarial", t)}
    for update_bn, bn in ((False, "frozen BN"), (True, "updating BN")):
        nets[f"{bn}, centering"] = Net("adversarial", t, "centered", update_bn=update_bn)
        for lr in cfg.sgd_comparison_lrs:
            nets[f"{bn}, SGD lr {lr:g}"] = Net("adversarial", t, "centered_standard", lr=lr,
                                              update_bn=update_bn)
    return nets


def _sgd_lr(cfg: Profile, rank: str) -> float:
    """The lower or higher of the profile's SGD learning rates."""
    return min(cfg.sgd_comparison_lrs) if rank == "lower" else max(cfg.sgd_comparison_lrs)


def _sgd_loses_what_centering_keeps(rank: str) -> Callable[[Sources], list[Comparison]]:
    def measure(src: Sources) -> list[Comparison]:
        cfg = src.cfg
        nets, lr = _table1_nets(cfg), _sgd_lr(cfg, rank)
        name = f"frozen BN, SGD lr {lr:g}"
        sgd_clean, parent_clean = (float(accuracy(src.correct(nets[n], CLEAN)).mean())
                                   for n in (name, "parent"))
        unmet = None if sgd_clean >= parent_clean else (
            f"SGD at lr {lr:g} ends below its parent's clean accuracy ({sgd_clean:.1f} vs "
            f"{parent_clean:.1f} %): it has not trained in {cfg.stage2_epochs} stage-2 "
            f"epoch(s), so the comparison is confounded")
        return [compare_accuracy(src, nets[name], nets["parent"], "less", attack=PGD,
                                 names=(name, "the parent"), unmet=unmet,
                                 paper_difference=_paper(cfg, "table1", (name, "robust"),
                                                         ("parent", "robust"))),
                compare_accuracy(src, nets["frozen BN, centering"], nets[name], "greater",
                                 attack=PGD, names=("frozen-BN centering", name), unmet=unmet,
                                 paper_difference=_paper(cfg, "table1",
                                                         ("frozen BN, centering", "robust"),
                                                         (name, "robust")))]
    return measure


def _updating_bn_costs_accuracy(src: Sources) -> list[Comparison]:
    cfg, nets = src.cfg, _table1_nets(src.cfg)
    models = ["centering", *(f"SGD lr {lr:g}" for lr in cfg.sgd_comparison_lrs)]
    return [compare_accuracy(src, nets[f"updating BN, {model}"], nets[f"frozen BN, {model}"],
                             "less", attack=attack, must_learn=(1,),
                             names=(f"updating-BN {model}", f"frozen-BN {model}"),
                             paper_difference=_paper(cfg, "table1",
                                                     (f"updating BN, {model}", column),
                                                     (f"frozen BN, {model}", column)))
            for model in models for attack, column in ((CLEAN, "clean"), (PGD, "robust"))]


def _sgd_moves_kernel_more_at_higher_lr(src: Sources) -> list[Comparison]:
    cfg = src.cfg
    nets = _table1_nets(cfg)
    parent = nets["parent"]
    low, high = (nets[f"frozen BN, SGD lr {_sgd_lr(cfg, rank):g}"] for rank in ("lower", "higher"))
    return [paired(src.kernel_distance(high, parent), src.kernel_distance(low, parent),
                   "greater")]


# --- section 7: adversarial training on a frozen kernel ---------------------------------------

def _table2_nets(cfg: Profile) -> dict[str, NetworkId]:
    end = _end(cfg)
    return {"K_0": Net("benign", 0.0, "centered", adversarial=True),
            "K_T benign": Net("benign", end, "centered", adversarial=True),
            "K_T adversarial": Net("adversarial", end, "centered", adversarial=True),
            "standard adversarial training": Net("adversarial", end),
            "centering on the early adversarial kernel": Net("adversarial", _early(cfg),
                                                             "centered")}


def _frozen(src: Sources, a: str, b: str, must_learn: Sequence[int]) -> Comparison:
    cfg = src.cfg
    nets = _table2_nets(cfg)
    paper_values = {"K_0": paper.table_value(cfg, "table2", "K_0 (initialisation)",
                                             "adversarial robust"),
                    "K_T benign": paper.table_value(cfg, "table2", "K_T benign",
                                                    "adversarial robust"),
                    "K_T adversarial": paper.table_value(cfg, "table2", "K_T adversarial",
                                                         "adversarial robust"),
                    "standard adversarial training": paper.table_value(
                        cfg, "table2", "standard adversarial training", "benign robust"),
                    "centering on the early adversarial kernel": paper.REPORTED.get(
                        (cfg.dataset, cfg.eps_255), {}).get("centered_spawn10_adversarial_robust")}
    first, second = paper_values[a], paper_values[b]
    return compare_accuracy(
        src, nets[a], nets[b], "greater", attack=WORST, must_learn=must_learn,
        names=(f"adversarial training on {a}",
               b if b in ("standard adversarial training",
                          "centering on the early adversarial kernel")
               else f"adversarial training on {b}"),
        paper_difference=None if first is None or second is None
        else round(first[0] - second[0], 2))


def _benign_kernel_is_best(src: Sources) -> list[Comparison]:
    return [_frozen(src, "K_T benign", other, (0, 1))
            for other in ("K_T adversarial", "standard adversarial training",
                          "centering on the early adversarial kernel")]


def _learned_kernel_beats_initial(src: Sources) -> list[Comparison]:
    return [_frozen(src, learned_kernel, "K_0", (0,))
            for learned_kernel in ("K_T benign", "K_T adversarial")]


def _initial_kernel_fails(src: Sources) -> list[Comparison]:
    cfg = src.cfg
    clean = src.correct(_table2_nets(cfg)["K_0"], CLEAN)
    floor = LEARNED_OVER_CHANCE * 100.0 / cfg.num_classes
    return [Comparison(clean, None, "less", f"{describe(clean, 1)} % clean", threshold=floor,
                       attack=CLEAN)]


# --- the registry ------------------------------------------------------------------------------

# --- section 9: eps = 8/255 against eps = 4/255 ---------------------------------------------

def _larger_radius(cfg: Profile) -> bool:
    return settings.of(cfg) == settings.EPS8 and _has("benign", "adversarial")(cfg)


def _kernel_gap_grows(src: Sources) -> list[Comparison]:
    at4, at8 = src.by_radius("kernel_gap").values()
    return [paired(at8, at4, "greater")]


def _adversarial_kernel_converges_slower(src: Sources) -> list[Comparison]:
    at4, at8 = src.by_radius("adversarial_convergence").values()
    return [paired(at8, at4, "greater", 3)]


def _robust_overfitting(src: Sources) -> list[Comparison]:
    cfg = src.cfg
    return [compare_accuracy(src, Net("adversarial", radius.overfitting_epoch(cfg)),
                             Net("adversarial", _end(cfg)), "greater", attack=PGD,
                             names=("adversarial training at mid-training",
                                    "adversarial training at the end"), must_learn=(1,))]


def _per_mode(modes: Sequence[str], make: Callable[[str], Claim]) -> list[Claim]:
    return [make(mode) for mode in modes]


WORST_TEXT = "worst-case accuracy (the audit's attack ensemble, on the audited images)"
PGD_TEXT = ("PGD accuracy on the test images (Table 1 is measured by PGD, as in the paper; "
            "the worst case is kept for the audited networks and Table 2)")
PAIRED_IMAGES = "paired by seed and image"

REGISTRY: list[Claim] = [
    Claim("adversarial_training_buys_robustness", "protocol", "§4, Fig. 2; Table 2",
          "adversarial training buys robust accuracy that benign training does not have "
          "(end of stage 1)", "51.77 vs about 0 (PGD-100)",
          "PGD accuracy of the final adversarial network minus the final benign network's, "
          f"{PAIRED_IMAGES}; holds if the interval is above 0",
          "points", _adversarial_buys_robustness, _has("benign", "adversarial")),
    *_per_mode(("benign", "adversarial"), lambda mode: Claim(
        f"{mode}_kernel_converges_early", "kernel_evolution", "§3, Fig. 1b",
        f"{mode}: the kernel converges early, to close to the final kernel",
        "within about 30 of 100 epochs",
        "kernel distance to the final kernel at the checkpoint nearest 30 % of stage 1, minus "
        "a quarter of that distance at epoch 0, paired by seed; holds if the interval is "
        "below 0", "S", _converges_early(mode), _has(mode))),
    Claim("adversarial_kernel_is_distinct", "kernel_evolution", "§3, Fig. 1b",
          "adversarial training converges to a different kernel than benign training",
          "a distinct kernel (no number)",
          "per pair of seeds, the distance between one seed's final benign (adversarial) kernel "
          "and the other's final adversarial (benign) kernel, minus the distance between their "
          "final kernels of the same mode: like with like, different initialisations on both "
          "sides; seeds are the replicates (jackknife over seeds); holds if the interval is "
          "above 0", "S", _distinct_kernel,
          lambda cfg: _has("benign", "adversarial")(cfg) and len(cfg.seeds) > 1),
    Claim("benign_kernel_nearer_adversarial_than_initial", "kernel_evolution", "§3, Fig. 1",
          "the benign kernel is more similar to the adversarial kernel than to the initial NTK",
          "implied by the small spike at the switch (no number)",
          "distance between the final benign and final adversarial kernels minus the distance "
          "between the final benign kernel and the same run's initial kernel, paired by seed; "
          "holds if the interval is below 0", "S", _benign_kernel_nearer_adversarial,
          _has("benign", "adversarial")),
    Claim("flip_velocity_spikes", "kernel_evolution", "§3, Fig. 1a",
          "switching from benign to adversarial training makes the kernel velocity spike",
          "a small spike at epoch 50",
          "kernel velocity of the flip run over the epoch after the switch, minus the benign "
          "run's over the same epoch (the control: same seed, same first epochs, no switch), "
          "paired by seed; holds if the interval is above 0", "dS/dt", _flip_spike,
          _flip_applies),
    Claim("flip_kernel_moves_after_switch", "kernel_evolution", "§3, Fig. 1b",
          "flip: the kernel stabilises at the benign kernel, then moves to the adversarial one "
          "after the switch", "stabilises, then changes after epoch 50",
          "distance to its own final kernel at the switch epoch, flip run minus benign run (same "
          "seed and first epochs), paired by seed; holds if the interval is above 0 (the flip "
          "run ends elsewhere)", "S", _flip_settles_at_benign_kernel,
          lambda cfg: _has("flip", "benign")(cfg) and float(cfg.flip_epoch)
          in cfg.checkpoint_epochs),
    Claim("adversarial_kernel_higher_rank", "kernel_evolution", "§3, Fig. 1c; §10",
          "the final adversarial kernel has the higher effective rank", "higher (no number)",
          "effective rank of the final adversarial kernel minus the final benign kernel's, "
          "paired by seed; holds if the interval is above 0", "rank",
          _final_statistic("effective_rank", "greater"), _has("benign", "adversarial")),
    Claim("adversarial_kernel_less_specialised", "kernel_evolution", "§3, Fig. 1d; §10",
          "the final adversarial kernel has the lower mean kernel specialization",
          "lower (no number)",
          "mean specialization of the final adversarial kernel minus the final benign "
          "kernel's, paired by seed; holds if the interval is below 0", "KSM",
          _final_statistic("mean_specialization", "less"),
          lambda cfg: _has("benign", "adversarial")(cfg) and cfg.num_classes <= 10),
    Claim("centered_beats_adversarial_training", "linearized_training", "§4, Fig. 2b",
          "centered training on the final adversarial kernel is more robust than standard "
          "adversarial training", "55.46 vs 51.77 (PGD-100)",
          f"{WORST_TEXT} of the centered model minus the adversarially trained network's, "
          f"{PAIRED_IMAGES}; both must have learned",
          "points", _centered_beats_standard(_end, "centered_final_adversarial_robust"),
          _has("adversarial"),
          paper_elsewhere={"cifar100": "27.35 vs 24.42 (PGD-100)",
                           "eps8": "49.15 vs 35.80 (PGD-100)"}),
    Claim("centered_costs_clean_accuracy", "linearized_training", "§4, Fig. 2 caption; Table 2",
          "centered training's robustness gain comes at some cost in clean accuracy",
          "79.65 vs 81.58 clean",
          "clean accuracy of centered training on the final adversarial kernel minus the "
          f"adversarially trained network's, {PAIRED_IMAGES}; holds if the interval is below 0",
          "points", _centered_costs_clean_accuracy, _has("adversarial")),
    *_per_mode(("benign", "adversarial"), lambda mode: Claim(
        f"{mode}_centered_beats_linearized", "linearized_training", "§4, Fig. 2",
        f"{mode} kernel: centered training is more robust than linearized training",
        "higher (Fig. 2, no number)",
        f"{WORST_TEXT} of the centered model minus the linearized model's PGD accuracy on the "
        f"same images (not audited: a weaker attack on the control, so conservative; it can "
        f"hold or be inconclusive, never fail), {PAIRED_IMAGES}; both must have learned",
        "points", _centered_beats_linearized(mode), _has(mode))),
    Claim("benign_centered_beats_standard", "linearized_training", "§4, Fig. 2a",
          "the benign network has no robustness, yet centered training on its final kernel "
          "does", "41.41 vs about 0",
          f"{WORST_TEXT} of the centered model minus the benign network's PGD accuracy on the "
          f"same images (a weaker attack on the control, so conservative; it can hold or be "
          f"inconclusive, never fail), {PAIRED_IMAGES}; both must have learned", "points",
          _benign_centered_beats_standard, _has("benign"),
          paper_elsewhere={"cifar100": "14.16 vs about 0", "eps8": "32.29 vs about 0"}),
    Claim("early_adversarial_kernel_centered_beats_adversarial_training",
          "linearized_training", "§4, Fig. 2b",
          "centered training on the early adversarial kernel (the paper: epoch 10) is more "
          "robust than standard adversarial training", "62.09 vs 51.77 (PGD-100)",
          f"{WORST_TEXT} of the centered model at the profile's early spawn epoch minus the "
          f"adversarially trained network's, {PAIRED_IMAGES}; both must have learned; the "
          "paper's size of the gain (over 10 points) is not tested as a threshold", "points",
          _centered_beats_standard(_early, "centered_spawn10_adversarial_robust"),
          _has("adversarial")),
    Claim("centered_adversarial_kernel_peaks_early", "linearized_training", "§4, Fig. 2b",
          "centered training on the adversarial kernel is most robust early: more at the "
          "paper's epoch 10 than at the end", "62.09 vs 55.46 (PGD-100)",
          f"{WORST_TEXT} of centered training at the profile's early spawn epoch minus at the "
          f"end of stage 1, {PAIRED_IMAGES}; both must have learned", "points",
          _centered_adversarial_kernel_peaks_early,
          lambda cfg: "adversarial" in cfg.modes and _early(cfg) < cfg.stage1_epochs),
    Claim("benign_kernel_gains_robustness", "linearized_training", "§4, Fig. 2a",
          "the benign kernel gains robustness with training: centered training on the final "
          "benign kernel is more robust than on the initial kernel",
          "41.41 at t = 100 vs 0.00 at t = 0",
          f"{WORST_TEXT} of centered training on the final benign kernel minus on the initial "
          f"kernel, {PAIRED_IMAGES}; both models must have learned (clean accuracy >= "
          f"{LEARNED_OVER_CHANCE:g}x chance)", "points", _benign_kernel_gains_robustness,
          _has("benign"),
          paper_elsewhere={"cifar100": "14.16 at t = 100 (t = 0: Fig. 2, no number)",
                           "eps8": "32.29 at t = 100 (t = 0: Fig. 5, no number)"}),
    *_per_mode(("benign", "adversarial"), lambda mode: Claim(
        f"{mode}_relative_magnitude_peaks", "linearized_training", "§4, Fig. 2c",
        f"{mode}: the first-order term of linearized training peaks at an early spawn epoch "
        f"and fades", "a peak near t = 10-15 of 100",
        "per seed, the relative magnitude at the profile's early spawn epoch (the paper's "
        "t = 10, fixed in advance) minus the larger of its values at the first and last "
        "spawn epochs; holds if the interval is above 0", "ratio", _magnitude_peaks(mode),
        lambda cfg: _peak_applies(cfg) and mode in cfg.modes)),
    *_per_mode(("benign", "adversarial"), lambda mode: Claim(
        f"{mode}_centered_transfers_less", "transferability", "§5, Fig. 3",
        f"{mode}: PGD examples of centered models transfer less to the final network than "
        f"those of standard networks", "far less (no number)",
        "per seed, tau of centered models minus tau of the standard parents, averaged over "
        "the spawn epochs before the end (at the end tau = 1 by construction); holds if the "
        "interval is below 0", "tau", _centered_transfers_less(mode), _has(mode))),
    *_per_mode(("benign", "adversarial"), lambda mode: Claim(
        f"{mode}_initial_kernel_does_not_transfer", "transferability", "§5, Fig. 3",
        f"{mode}: PGD examples of the initial NTK (centered, t = 0) do not transfer",
        "not at all (tau about 0)",
        f"tau of the centered model at t = 0, per seed; holds if the interval is below "
        f"{TAU_NEGLIGIBLE:g}", "tau", _initial_kernel_does_not_transfer(mode),
        lambda cfg: mode in cfg.modes and cfg.spawn_epochs[0] == 0)),
    *[Claim(f"sgd_{rank}_lr_loses_robustness", "sgd_vs_linearized", "§6, Table 1",
            f"frozen BN: SGD at the {rank} learning rate loses the parent's robustness, which "
            f"centering keeps", "44.99 (lr 1e-4) and 44.39 (lr 1e-2) vs parent 48.73 and "
            "centering 62.09",
            f"{PGD_TEXT}: (1) the SGD run's minus its parent's, below 0, and (2) frozen-BN "
            f"centering's minus the SGD run's, above 0, {PAIRED_IMAGES}; testable only if the "
            "SGD run's clean accuracy reaches its parent's (it trained)", "points",
            _sgd_loses_what_centering_keeps(rank), _has("adversarial"))
      for rank in ("lower", "higher")],
    Claim("updating_bn_costs_accuracy", "sgd_vs_linearized", "§6, Table 1",
          "updating BatchNorm statistics costs every stage-2 model (centering and SGD) clean "
          "and robust accuracy", "30.80 / 19.45 vs 81.73 / 62.09 for centering",
          f"clean and {PGD_TEXT} with updating BN minus with frozen BN, for centering and "
          f"each SGD learning rate, {PAIRED_IMAGES}; every one must be below 0; the frozen-BN "
          "models must have learned", "points", _updating_bn_costs_accuracy,
          _has("adversarial")),
    Claim("sgd_moves_kernel_more_at_higher_lr", "sgd_vs_linearized", "§6, Table 1",
          "SGD moves the kernel away from the parent's, more at the higher learning rate",
          "0.0290 (lr 1e-2) vs 0.0140 (lr 1e-4)",
          "kernel distance to the parent after frozen-BN SGD at the higher learning rate "
          "minus at the lower, paired by seed; holds if the interval is above 0", "S",
          _sgd_moves_kernel_more_at_higher_lr,
          lambda cfg: "adversarial" in cfg.modes and len(set(cfg.sgd_comparison_lrs)) > 1),
    Claim("benign_kernel_best_for_adversarial_training", "frozen_kernel_adversarial_training",
          "§7, Table 2",
          "adversarial training on the frozen benign kernel is the most robust: above the "
          "adversarial kernel's, standard adversarial training and centering on the early "
          "adversarial kernel", "76.15 vs 57.50, 51.77 and 62.09 (PGD-100)",
          f"{WORST_TEXT} of adversarial centered training on K_T benign minus (1) on K_T "
          "adversarial, (2) standard adversarial training and (3) centered training on the "
          f"early adversarial kernel, {PAIRED_IMAGES}; all must hold", "points",
          _benign_kernel_is_best, _has("benign", "adversarial")),
    Claim("learned_kernel_beats_initial", "frozen_kernel_adversarial_training", "§7, Table 2",
          "adversarial training on a learned kernel beats adversarial training on the initial "
          "kernel", "76.15 and 57.50 vs 6.27 (PGD-100)",
          f"{WORST_TEXT} of adversarial centered training on (1) K_T benign and (2) K_T "
          f"adversarial minus on K_0, {PAIRED_IMAGES}; both must hold; the learned-kernel "
          "models must have learned", "points", _learned_kernel_beats_initial,
          _has("benign", "adversarial")),
    Claim("initial_kernel_fails_adversarial_training", "frozen_kernel_adversarial_training",
          "§7, Table 2",
          "the initial kernel fails to learn the data under adversarial training",
          "10.46 clean (chance: 10)",
          f"clean accuracy of adversarial centered training on K_0; holds if the interval is "
          f"below {LEARNED_OVER_CHANCE:g}x chance", "%", _initial_kernel_fails, _has("benign")),
    Claim("larger_radius_widens_kernel_gap", settings.SECTION9, "§9, Fig. 5 vs Fig. 1",
          "at eps = 8/255 the benign and adversarial kernels are slightly further apart than "
          "at eps = 4/255", "slightly larger (no number)",
          "distance between the final benign and final adversarial kernels at eps 8 minus at "
          "eps 4 (the same benign run: it does not depend on eps), paired by seed; holds if "
          "the interval is above 0", "S", _kernel_gap_grows, _larger_radius),
    Claim("larger_radius_slows_adversarial_kernel", settings.SECTION9, "§9, Fig. 5 vs Fig. 1",
          "at eps = 8/255 the adversarial kernel takes longer to converge",
          "longer (no number)",
          "the adversarial kernel's distance to its final kernel at the checkpoint nearest 30 % "
          "of stage 1, as a fraction of that distance at epoch 0, at eps 8 minus at eps 4, "
          "paired by seed; holds if the interval is above 0", "ratio",
          _adversarial_kernel_converges_slower, _larger_radius),
    Claim("robust_overfitting", settings.SECTION9, "§9",
          "robust overfitting: adversarial training's best robust accuracy comes earlier than "
          "the end of training", "observed (no number)",
          "PGD accuracy of adversarial training at the middle of stage 1 (the checkpoint "
          "fixed in advance: half its epochs, rounded down) minus at the end, "
          f"{PAIRED_IMAGES}; holds if the interval is above 0; the final network must have "
          "learned", "points", _robust_overfitting,
          lambda cfg: _larger_radius(cfg) and 0 < radius.overfitting_epoch(cfg)
          < cfg.stage1_epochs),
]


def for_page(cfg: Profile, page: str | None = None) -> list[Claim]:
    """The registry's claims that apply to the profile (on ``page``, or all of its
    setting's: :func:`ntkbook.settings.shows`)."""
    return [c for c in REGISTRY if (c.page == page if page else settings.shows(cfg, c.page))
            and c.applies(cfg)]


def evaluate(sources: Sources, page: str | None = None) -> list[Result]:
    """Every applicable claim (of ``page``, or all) decided on ``sources``."""
    return [dataclasses.replace(decide(claim, claim.measure(sources)),
                                paper=claim.paper_for(sources.cfg))
            for claim in for_page(sources.cfg, page)]


def page_title(page: str) -> str:
    """The title of ``book/<page>.ipynb`` (its first line, without the ``#``)."""
    cells = json.loads((BOOK / f"{page}.ipynb").read_text())["cells"]
    return "".join(cells[0]["source"]).splitlines()[0].lstrip("# ")


def show(cfg: Profile, store: Store, page: str) -> report.ClaimsTable:
    """``page``'s claims decided on the cache, as the table a notebook displays."""
    return report.ClaimsTable([r.as_dict() for r in evaluate(Sources(cfg, store), page)])


def overview(cfg: Profile, store: Store) -> list[Result]:
    """Every claim of the book decided on the cache (the claims page)."""
    return evaluate(Sources(cfg, store))


def decided_by_worst_case(cfg: Profile, store: Store) -> report.ClaimsTable:
    """The claims on robust accuracy that the audit's worst case decided, with what PGD
    alone would have said (the audit page)."""
    pages = ("linearized_training", "sgd_vs_linearized", "frozen_kernel_adversarial_training")
    sources = Sources(cfg, store)
    results = [r for page in pages for r in evaluate(sources, page) if r.pgd_verdict]
    return report.ClaimsTable([r.as_dict() for r in results], carry=False)


def scale_caveat(cfg: Profile, store: Store) -> str:
    """How this profile differs from the paper, in numbers."""
    sources = Sources(cfg, store)
    text = (f"Profile `{cfg.label}` trains {MODEL_NAMES[cfg.model]} of width {cfg.width} for "
            f"{cfg.stage1_epochs} + {cfg.stage2_epochs} epochs on {cfg.n_train:,} "
            f"{cfg.dataset.upper()} images with {len(cfg.seeds)} seeds; the paper trains "
            f"ResNet-18 of width 64 for 100 + 100 epochs on 50,000 with 3 seeds")
    if "adversarial" in cfg.modes:
        final = Net("adversarial", _end(cfg))
        clean, pgd_accuracy = (describe(sources.correct(final, a), 1) for a in (CLEAN, PGD))
        reported = paper.REPORTED.get((cfg.dataset, cfg.eps_255), {})
        text += (f". Standard adversarial training reaches {clean} % clean and "
                 f"{pgd_accuracy} % PGD-{cfg.eval_pgd_steps} accuracy here")
        if "adversarial_training_clean" in reported:
            text += (f", against the paper's {reported['adversarial_training_clean'][0]} % and "
                     f"{reported['adversarial_training_robust'][0]} % (PGD-100)")
    return text + "."
