"""Section 9: what a larger radius (eps = 8/255) changes against eps = 4/255.

Each measure is per seed, at the profile (eps 8) and at its main twin (the same profile at
eps 4, :func:`ntkbook.settings.main_twin`): the same benign runs, adversarial runs at both
radii. The twin's adversarial runs and kernels are computed where the cache lacks them (the
eps-8 kernels job does so: :mod:`ntkbook.jobs`).
"""

from __future__ import annotations

import numpy as np

from ntkbook import evidence, kernel_study, settings
from ntkbook.config import Profile
from ntkbook.evidence import PGD, Net, Sources
from ntkbook.store import Store


def radii(cfg: Profile) -> dict[float, Profile]:
    """``{eps_255: profile}``: the main twin's radius first, then the profile's."""
    twin = settings.main_twin(cfg)
    return {twin.eps_255: twin, cfg.eps_255: cfg}


def overfitting_epoch(cfg: Profile) -> float:
    """The mid-training checkpoint whose robust accuracy is compared with the end's."""
    return float(cfg.stage1_epochs // 2)


def kernel_gap(cfg: Profile, store: Store) -> dict[float, np.ndarray]:
    """Per radius, per seed: S between the final benign and final adversarial kernels."""
    end = float(cfg.stage1_epochs)
    return {eps: Sources(p, store).kernel_distance(Net("benign", end), Net("adversarial", end))
            for eps, p in radii(cfg).items()}


def adversarial_convergence(cfg: Profile, store: Store) -> dict[float, np.ndarray]:
    """Per radius, per seed: the adversarial kernel's distance to its final kernel at the
    early checkpoint, as a fraction of that distance at initialisation (0: converged)."""
    epochs, early = list(cfg.checkpoint_epochs), kernel_study.early_index(cfg)
    out = {}
    for eps, p in radii(cfg).items():
        d = np.stack([kernel_study.kernel_evolution(p, store, seed, "adversarial",
                                                    epochs)["distance_to_final"]
                      for seed in p.seeds])
        out[eps] = d[:, early] / d[:, 0]
    return out


def robust_accuracy_mid_and_end(cfg: Profile, store: Store) -> dict[float, np.ndarray]:
    """PGD correctness of adversarial training at :func:`overfitting_epoch` and at the end
    of stage 1: ``{epoch: (seeds, images)}``."""
    sources = Sources(cfg, store)
    return {e: sources.correct(Net("adversarial", e), PGD)
            for e in (overfitting_epoch(cfg), float(cfg.stage1_epochs))}


def table(cfg: Profile, store: Store) -> list[tuple[str, str, str]]:
    """Rows (measure, at eps 4, at eps 8) of the section's comparisons, mean ± s.d. over
    seeds."""
    gap, convergence = kernel_gap(cfg, store), adversarial_convergence(cfg, store)
    early = cfg.checkpoint_epochs[kernel_study.early_index(cfg)]
    rows = [("S(final benign kernel, final adversarial kernel)",
             *(evidence.describe(v, 4) for v in gap.values())),
            (f"adversarial kernel: distance to final at epoch {early:g} / at epoch 0",
             *(evidence.describe(v, 3) for v in convergence.values()))]
    accuracy = robust_accuracy_mid_and_end(cfg, store)
    rows += [(f"adversarial training: PGD accuracy (%) at epoch {e:g}", "",
              evidence.describe(evidence.accuracy(v), 1)) for e, v in accuracy.items()]
    return rows
