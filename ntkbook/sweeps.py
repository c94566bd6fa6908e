"""Sections 4 and 5: stage 2 from every spawn epoch, collected as arrays over seeds.

For each stage-1 mode (benign, adversarial) and spawn epoch t: the parent itself (standard
dynamics) and stage 2 on benign data with linearized and centered dynamics (frozen BatchNorm,
the profile's learning rate). Every run and number is a cached artifact, so section 5 and the
tables reuse what section 4 trained.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import numpy as np

from ntkbook import experiment, robustness
from ntkbook.config import Profile
from ntkbook.experiment import Network, NetworkId
from ntkbook.progress import progress
from ntkbook.store import Store

log = logging.getLogger(__name__)

STAGE1_MODES = ("benign", "adversarial")
STAGE2_DYNAMICS = ("linearized", "centered")
ALL_DYNAMICS = ("standard",) + STAGE2_DYNAMICS


def modes(cfg: Profile) -> list[str]:
    """The stage-1 modes of sections 4 and 5 that the profile trains."""
    return [mode for mode in STAGE1_MODES if mode in cfg.modes]


def network(cfg: Profile, store: Store, seed: int, mode: str, spawn_epoch: float,
            dynamics: str) -> Network:
    """The parent at ``spawn_epoch`` (standard) or its benign stage-2 child (other dynamics)."""
    if dynamics == "standard":
        return experiment.stage1_network(cfg, seed, mode, spawn_epoch, store)
    return experiment.stage2_network(cfg, seed, mode, spawn_epoch, dynamics, store)


def final_network(cfg: Profile, store: Store, seed: int, mode: str) -> Network:
    """The stage-1 network at the end of training: section 5's target."""
    return experiment.stage1_network(cfg, seed, mode, cfg.stage1_epochs, store)


def _sweep(cfg: Profile, store: Store, dynamics: tuple[str, ...], description: str,
           measure: Callable[[int, str, float, str], object]) -> dict[str, dict[str, np.ndarray]]:
    """``{mode: {dynamics: array (seeds, spawn epochs, ...)}}`` of ``measure(seed, mode, t,
    dynamics)``, with a progress bar and the wall time logged."""
    jobs = [(seed, mode, t, d) for mode in modes(cfg) for d in dynamics for seed in cfg.seeds
            for t in cfg.spawn_epochs]
    start = time.perf_counter()
    values = {job: measure(*job) for job in progress(jobs, desc=description)}
    log.info("%s: %d results in %.1f s", description, len(jobs), time.perf_counter() - start)
    return {mode: {d: np.array([[values[seed, mode, t, d] for t in cfg.spawn_epochs]
                                for seed in cfg.seeds])
                   for d in dynamics}
            for mode in modes(cfg)}


def accuracy_by_spawn(cfg: Profile, store: Store) -> dict[str, dict[str, np.ndarray]]:
    """Clean and PGD accuracy (%), arrays (seeds, spawn epochs, 2)."""
    def measure(seed: int, mode: str, t: float, dynamics: str) -> list[float]:
        result = experiment.evaluation(cfg, store, network(cfg, store, seed, mode, t, dynamics))
        return [result["clean"], result["robust"]]

    return _sweep(cfg, store, ALL_DYNAMICS, "stage 2 accuracy", measure)


def final_accuracy(cfg: Profile, store: Store) -> dict[str, np.ndarray]:
    """Clean and PGD accuracy of each mode's final stage-1 network, arrays (seeds, 2)."""
    return {mode: np.array([[r["clean"], r["robust"]] for r in (
        experiment.evaluation(cfg, store, final_network(cfg, store, seed, mode))
        for seed in cfg.seeds)])
        for mode in modes(cfg)}


def relative_magnitude_by_spawn(cfg: Profile, store: Store) -> dict[str, dict[str, np.ndarray]]:
    """||Delta f||^2 / ||f0||^2 of the linearized networks, arrays (seeds, spawn epochs)."""
    def measure(seed: int, mode: str, t: float, dynamics: str) -> float:
        return experiment.relative_magnitude(cfg, store,
                                             network(cfg, store, seed, mode, t, dynamics))

    return _sweep(cfg, store, ("linearized",), "relative magnitude", measure)


def transferability_by_spawn(cfg: Profile, store: Store) -> dict[str, dict[str, np.ndarray]]:
    """tau of every network's PGD examples on the final stage-1 network of the same mode and
    seed, arrays (seeds, spawn epochs)."""
    def measure(seed: int, mode: str, t: float, dynamics: str) -> float:
        return experiment.transferability(cfg, store,
                                          network(cfg, store, seed, mode, t, dynamics),
                                          final_network(cfg, store, seed, mode))

    return _sweep(cfg, store, ALL_DYNAMICS, "transferability", measure)


@dataclasses.dataclass(frozen=True)
class HeadlineRow:
    """One headline number of section 4: per-seed clean and PGD accuracy on the test subset
    and worst-case accuracy on the audited images, and the key of the paper's number."""

    name: str
    label: str
    clean: np.ndarray
    pgd: np.ndarray
    worst_case: np.ndarray
    paper_key: str


def headline(cfg: Profile, store: Store) -> list[HeadlineRow]:
    """Standard adversarial training, and centered training on the final adversarial kernel,
    on the adversarial kernel at ``sgd_comparison_spawn_epoch``, and on the final benign
    kernel (rows whose stage-1 mode the profile does not train are left out)."""
    end, early = float(cfg.stage1_epochs), cfg.sgd_comparison_spawn_epoch
    rows = [("standard_at", "standard adversarial training (stage 1, end)",
             lambda s: NetworkId(s, "adversarial", end), "adversarial_training_robust"),
            ("centered_at", "centered on the final adversarial kernel",
             lambda s: NetworkId(s, "adversarial", end, "centered"),
             "centered_final_adversarial_robust"),
            ("centered_t10", f"centered on the adversarial kernel at t = {early:g}",
             lambda s: NetworkId(s, "adversarial", early, "centered"),
             "centered_spawn10_adversarial_robust"),
            ("centered_bt", "centered on the final benign kernel",
             lambda s: NetworkId(s, "benign", end, "centered"), "centered_final_benign_robust")]
    out = []
    for name, label, nid_of, key in rows:
        if nid_of(cfg.seeds[0]).mode not in cfg.modes:
            continue
        networks = [experiment.network(cfg, store, nid_of(seed)) for seed in cfg.seeds]
        evaluations = [experiment.evaluation(cfg, store, n) for n in networks]
        out.append(HeadlineRow(
            name, label, np.array([e["clean"] for e in evaluations]),
            np.array([e["robust"] for e in evaluations]),
            np.array([robustness.worst_case_accuracy(cfg, store, n) for n in networks]), key))
    return out
