"""What the claims are decided on: per-seed (and per-image) numbers read from the cache.

:class:`Sources` is the only way :mod:`ntkbook.claims` reaches results, so the claims can be
driven by synthetic numbers in tests (any object with the same methods will do). Each method
returns arrays over the profile's seeds (axis 0) and memoises within one page's evaluation.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ntkbook import experiment, kernel_study, kernels, robustness, sweeps
from ntkbook.config import Profile
from ntkbook.experiment import NetworkId
from ntkbook.store import Store

CLEAN, PGD, WORST = "clean", "PGD", "worst case"
PGD_AUDITED = "PGD on the audited images"  # the book's PGD, on the worst case's images


ANY_SEED = -1  # the seed of a network template: :meth:`NetworkId.at` gives it one


def Net(mode: str, epoch: float, dynamics: str = "standard", *, lr: float | None = None,  # noqa: N802
        update_bn: bool = False, adversarial: bool = False) -> NetworkId:
    """A network of the book without its seed: a template for every seed of a profile."""
    return NetworkId(ANY_SEED, mode, float(epoch), dynamics, lr, update_bn, adversarial)


class Sources:
    """Cached results of one profile, as arrays over seeds (computed if the cache lacks them)."""

    def __init__(self, cfg: Profile, store: Store):
        self.cfg, self.store = cfg, store

    def _network(self, nid: NetworkId) -> experiment.Network:
        return experiment.network(self.cfg, self.store, nid)

    @functools.lru_cache(maxsize=None)
    def correct(self, net: NetworkId, attack: str) -> np.ndarray:
        """Per seed and image, correct under ``attack`` (seeds, images): ``clean`` and ``PGD``
        on the test subset, ``worst case`` and ``PGD on the audited images`` on the audited
        images (a subset of the test subset, the same images in the same order)."""
        if attack == WORST:
            return np.stack([robustness.worst_case(self.cfg, self.store,
                                                   self._network(net.at(s))).robust
                             for s in self.cfg.seeds])
        if attack == PGD_AUDITED:
            return np.stack([robustness.attack_mask(self.cfg, self.store,
                                                    self._network(net.at(s)),
                                                    robustness.book_pgd(self.cfg))
                             for s in self.cfg.seeds])
        key = {CLEAN: "clean", PGD: "robust"}[attack]
        return np.stack([experiment.evaluation_masks(self.cfg, self.store,
                                                     self._network(net.at(s)))[key]
                         for s in self.cfg.seeds])

    @functools.lru_cache(maxsize=None)
    def kernel_statistics(self) -> dict[str, dict[str, np.ndarray]]:
        """Figure 1's statistics at ``checkpoint_epochs``: ``{mode: {name: (seeds, ...)}}``."""
        return kernel_study.evolution_by_mode(self.cfg, self.store,
                                              list(self.cfg.checkpoint_epochs))

    @functools.lru_cache(maxsize=None)
    def final_kernel_distances(self) -> dict[tuple[str, str], np.ndarray]:
        """S between final trace kernels of every pair of seeds: ``{(mode_i, mode_j): (seeds,
        seeds)}`` with entry [i, j] = S(kernel of seed i in mode_i, seed j in mode_j)."""
        finals = {(s, m): kernel_study.trace_kernel(
            self.cfg, self.store,
            self._network(NetworkId(s, m, float(self.cfg.stage1_epochs))))
            for s in self.cfg.seeds for m in sweeps.modes(self.cfg)}
        return {(m1, m2): np.array([[kernels.kernel_distance(finals[s1, m1], finals[s2, m2])
                                     for s2 in self.cfg.seeds] for s1 in self.cfg.seeds])
                for m1 in sweeps.modes(self.cfg) for m2 in sweeps.modes(self.cfg)}

    @functools.lru_cache(maxsize=None)
    def transferability(self) -> dict[str, dict[str, np.ndarray]]:
        """tau ``{mode: {dynamics: (seeds, spawn epochs)}}`` (section 5)."""
        return sweeps.transferability_by_spawn(self.cfg, self.store)

    @functools.lru_cache(maxsize=None)
    def relative_magnitude(self) -> dict[str, np.ndarray]:
        """Linearized first- over zeroth-order magnitude ``{mode: (seeds, spawn epochs)}``."""
        return {mode: values["linearized"] for mode, values in
                sweeps.relative_magnitude_by_spawn(self.cfg, self.store).items()}

    @functools.lru_cache(maxsize=None)
    def by_radius(self, measure: str) -> dict[float, np.ndarray]:
        """Section 9's per-seed ``measure`` of :mod:`ntkbook.radius` (``kernel_gap`` or
        ``adversarial_convergence``): ``{eps_255: (seeds,)}``, eps 4 first."""
        from ntkbook import radius  # it reads the main twin through this class
        return getattr(radius, measure)(self.cfg, self.store)

    @functools.lru_cache(maxsize=None)
    def kernel_distance(self, first: NetworkId, second: NetworkId) -> np.ndarray:
        """Per seed, S between the trace kernels of two networks of that seed (each through
        its own dynamics, on the kernel images)."""
        def kernel(nid: NetworkId) -> np.ndarray:
            return kernel_study.trace_kernel(self.cfg, self.store, self._network(nid))

        return np.array([kernels.kernel_distance(kernel(first.at(s)), kernel(second.at(s)))
                         for s in self.cfg.seeds])


def pgd_and_worst_case(cfg: Profile, store: Store) -> dict[str, dict[str, np.ndarray]]:
    """Per audited network of the robustness audit, (seeds, images) correctness on the
    audited images under the book's PGD and under the worst case."""
    sources = Sources(cfg, store)
    return {label: {PGD: sources.correct(nid.at(ANY_SEED), PGD_AUDITED),
                    WORST: sources.correct(nid.at(ANY_SEED), WORST)}
            for label, (nid, _) in robustness.audited_networks(cfg, cfg.seeds[0]).items()}


def accuracy(correct: np.ndarray) -> np.ndarray:
    """Per-seed accuracy (%) of (seeds, images) correctness."""
    return 100.0 * np.asarray(correct, float).mean(axis=1)


def describe(values: Any, digits: int = 2) -> str:
    """``'30.67'``: the mean over seeds of per-seed values, or of per-seed accuracies."""
    array = np.asarray(values)
    per_seed = accuracy(array) if array.dtype == bool and array.ndim == 2 else array
    finite = per_seed[np.isfinite(per_seed)]
    return f"{finite.mean():.{digits}f}" if finite.size else "undefined"
