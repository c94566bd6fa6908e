"""Sections 6 and 7: the networks behind Tables 1 and 2 and their per-seed numbers.

Each row is a list of per-seed values per column, computed from cached stage-2 runs,
evaluations, kernels and worst-case robust accuracies (shared with sections 3 and 4 wherever
the settings coincide). "worst case" is the robust accuracy under every attack of
:func:`ntkbook.robustness.ensemble` on the audited test images, beside the book's PGD.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ntkbook import experiment, kernel_study, kernels, robustness, settings
from ntkbook.config import Profile
from ntkbook.experiment import NetworkId
from ntkbook.store import Store

Table = dict[str, dict[str, np.ndarray]]  # {row: {column: per-seed values}}
WORST = "worst case"


def _accuracies(cfg: Profile, store: Store, nid: NetworkId, prefix: str = "",
                worst: bool = True) -> dict[str, float]:
    """Clean and PGD accuracy (test subset) and, if ``worst``, worst-case accuracy (audited
    images), %."""
    net = experiment.network(cfg, store, nid)
    result = experiment.evaluation(cfg, store, net)
    out = {f"{prefix}clean": result["clean"], f"{prefix}robust": result["robust"]}
    if worst:
        out[f"{prefix}{WORST}"] = robustness.worst_case_accuracy(cfg, store, net)
    return out


# --- section 6 (Table 1) ---------------------------------------------------------------

def sgd_comparison_ids(cfg: Profile, seed: int) -> dict[str, NetworkId]:
    """Table 1's networks: the adversarial parent at ``sgd_comparison_spawn_epoch`` and its
    children on benign data: centered dynamics and centered standard dynamics at each SGD
    learning rate, with frozen and with updating BatchNorm."""
    t = cfg.sgd_comparison_spawn_epoch
    ids = {"parent": NetworkId(seed, "adversarial", t)}
    for update_bn in (False, True):
        bn = "updating BN" if update_bn else "frozen BN"
        ids[f"{bn}, centering"] = NetworkId(seed, "adversarial", t, "centered",
                                            update_bn=update_bn)
        for lr in cfg.sgd_comparison_lrs:
            ids[f"{bn}, SGD lr {lr:g}"] = NetworkId(seed, "adversarial", t, "centered_standard",
                                                    lr=lr, update_bn=update_bn)
    return ids


def sgd_comparison(cfg: Profile, store: Store) -> Table:
    """Table 1: clean and PGD accuracy of the parent and each child (PGD, as the paper: the
    worst case is kept for Table 2 and the audited networks), and the kernel distance between
    each child's (trace) kernel and the parent's."""
    def row(name: str) -> Callable[[int], dict[str, float]]:
        def measure(seed: int) -> dict[str, float]:
            ids = sgd_comparison_ids(cfg, seed)
            out = _accuracies(cfg, store, ids[name], worst=False)
            if name != "parent":
                child, parent = (experiment.network(cfg, store, ids[n]) for n in (name, "parent"))
                out["distance"] = kernels.kernel_distance(
                    kernel_study.trace_kernel(cfg, store, child),
                    kernel_study.trace_kernel(cfg, store, parent))
            return out
        return measure

    names = list(sgd_comparison_ids(cfg, cfg.seeds[0]))
    return experiment.over_seeds(cfg.seeds, {name: row(name) for name in names},
                                 "Table 1 networks")


# --- section 7 (Table 2) ---------------------------------------------------------------

BASELINE = "standard adversarial training"


def base_kernel_parents(cfg: Profile) -> dict[str, tuple[str, float]]:
    """Table 2's base kernels as ``{row: (stage-1 mode, spawn epoch)}``."""
    end = float(cfg.stage1_epochs)
    return {"K_0 (initialisation)": ("benign", 0.0), "K_T benign": ("benign", end),
            "K_T adversarial": ("adversarial", end)}


def frozen_kernel_ids(cfg: Profile, seed: int) -> dict[str, dict[str, NetworkId]]:
    """Table 2's networks: ``{row: {stage-2 data: network}}``, centered dynamics on each base
    kernel trained on benign and on adversarial data, and the baseline (the end of
    adversarial stage 1) under "benign", where the paper's Table 2 puts it."""
    ids = {row: {data: NetworkId(seed, mode, t, "centered", adversarial=data == "adversarial")
                 for data in ("benign", "adversarial")}
           for row, (mode, t) in base_kernel_parents(cfg).items()}
    ids[BASELINE] = {"benign": NetworkId(seed, "adversarial", float(cfg.stage1_epochs))}
    return ids


def frozen_kernel_training(cfg: Profile, store: Store) -> Table:
    """Table 2: per base kernel and stage-2 data (benign, adversarial: PGD against the
    centered model), clean, PGD and worst-case accuracy; plus standard adversarial training
    as the baseline row."""
    def row(name: str) -> Callable[[int], dict[str, float]]:
        def measure(seed: int) -> dict[str, float]:
            out = {}
            for data, nid in frozen_kernel_ids(cfg, seed)[name].items():
                out.update(_accuracies(cfg, store, nid, prefix=f"{data} "))
            return out
        return measure

    names = list(frozen_kernel_ids(cfg, cfg.seeds[0]))
    return experiment.over_seeds(cfg.seeds, {name: row(name) for name in names},
                                 "Table 2 networks")


def table_networks(cfg: Profile, seed: int) -> list[NetworkId]:
    """Every network of Tables 1 and 2 for ``seed``; a table needs stage-1 modes the profile
    may not train (Table 1: adversarial, Table 2: benign and adversarial) and a setting that
    shows it (:func:`ntkbook.settings.shows`)."""
    ids = list(sgd_comparison_ids(cfg, seed).values()) \
        if "adversarial" in cfg.modes and settings.shows(cfg, "sgd_vs_linearized") else []
    return list(dict.fromkeys(ids + table2_networks(cfg, seed)))


def table2_networks(cfg: Profile, seed: int) -> list[NetworkId]:
    """Table 2's networks for ``seed`` (each gets a worst-case accuracy), if the profile
    trains benign and adversarial stage 1."""
    if not {"benign", "adversarial"} <= set(cfg.modes) or \
            not settings.shows(cfg, "frozen_kernel_adversarial_training"):
        return []
    return [nid for row in frozen_kernel_ids(cfg, seed).values() for nid in row.values()]
