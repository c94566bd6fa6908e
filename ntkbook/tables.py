"""Sections 6 and 7: the networks behind Tables 1 and 2 and their per-seed numbers.

Each row is a list of per-seed values per column, computed from cached stage-2 runs,
evaluations and kernels (shared with sections 3 and 4 wherever the settings coincide).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ntkbook import experiment, kernels, kernel_study
from ntkbook.config import Profile
from ntkbook.experiment import Network
from ntkbook.store import Store

Table = dict[str, dict[str, np.ndarray]]  # {row: {column: per-seed values}}


# --- section 6 (Table 1) ---------------------------------------------------------------

def sgd_comparison_children(cfg: Profile) -> dict[str, tuple[str, dict[str, Any]]]:
    """Table 1's stage-2 runs as ``{row: (dynamics, options)}``: centered dynamics and
    centered standard dynamics at each SGD learning rate, with frozen and updating BatchNorm,
    all on benign data from the adversarial parent at ``sgd_comparison_spawn_epoch``."""
    children = {}
    for update_bn in (False, True):
        bn = "updating BN" if update_bn else "frozen BN"
        children[f"{bn}, centering"] = ("centered", {"update_bn": update_bn})
        for lr in cfg.sgd_comparison_lrs:
            children[f"{bn}, SGD lr {lr:g}"] = ("centered_standard",
                                                {"update_bn": update_bn, "lr": lr})
    return children


def sgd_comparison_networks(cfg: Profile, store: Store,
                            seed: int) -> tuple[Network, dict[str, Network]]:
    """The adversarial parent and its Table 1 children (see :func:`sgd_comparison_children`)."""
    t = cfg.sgd_comparison_spawn_epoch
    parent = experiment.stage1_network(cfg, seed, "adversarial", t, store)
    return parent, {name: experiment.stage2_network(cfg, seed, "adversarial", t, dynamics,
                                                    store, **options)
                    for name, (dynamics, options) in sgd_comparison_children(cfg).items()}


def sgd_comparison(cfg: Profile, store: Store) -> Table:
    """Table 1: clean and PGD accuracy of the parent and each child, and the kernel distance
    between each child's (trace) kernel and the parent's."""
    names = ["parent", *sgd_comparison_children(cfg)]

    def row(name: str) -> Callable[[int], dict[str, float]]:
        def measure(seed: int) -> dict[str, float]:
            parent, children = sgd_comparison_networks(cfg, store, seed)
            if name == "parent":
                return experiment.evaluation(cfg, store, parent)
            child = children[name]
            distance = kernels.kernel_distance(kernel_study.trace_kernel(cfg, store, child),
                                               kernel_study.trace_kernel(cfg, store, parent))
            return {**experiment.evaluation(cfg, store, child), "distance": distance}
        return measure

    return experiment.over_seeds(cfg.seeds, {name: row(name) for name in names},
                                 "Table 1 networks")


# --- section 7 (Table 2) ---------------------------------------------------------------

def base_kernel_parents(cfg: Profile) -> dict[str, tuple[str, float]]:
    """Table 2's base kernels as ``{row: (stage-1 mode, spawn epoch)}``."""
    end = float(cfg.stage1_epochs)
    return {"K_0 (initialisation)": ("benign", 0.0), "K_T benign": ("benign", end),
            "K_T adversarial": ("adversarial", end)}


BASELINE = "standard adversarial training"


def frozen_kernel_training(cfg: Profile, store: Store) -> Table:
    """Table 2: centered dynamics on each base kernel, trained in stage 2 on benign and on
    adversarial data (PGD against the centered model), clean and PGD accuracy; plus standard
    adversarial training (the end of adversarial stage 1) as the baseline row."""
    def row(mode: str, t: float) -> Callable[[int], dict[str, float]]:
        def measure(seed: int) -> dict[str, float]:
            out = {}
            for data_kind, adversarial in (("benign", False), ("adversarial", True)):
                result = experiment.evaluate_stage2(cfg, seed, mode, t, "centered", store,
                                                    adversarial=adversarial)
                out[f"{data_kind} clean"], out[f"{data_kind} robust"] = (result["clean"],
                                                                         result["robust"])
            return out
        return measure

    def baseline(seed: int) -> dict[str, float]:
        result = experiment.evaluate_stage1(cfg, seed, "adversarial", cfg.stage1_epochs, store)
        return {"adversarial clean": result["clean"], "adversarial robust": result["robust"]}

    rows = {name: row(*parent) for name, parent in base_kernel_parents(cfg).items()}
    return experiment.over_seeds(cfg.seeds, {**rows, BASELINE: baseline}, "Table 2 networks")
