"""The paper's reported numbers (mean, std over 3 seeds), for side-by-side tables.

Keyed by (dataset, eps_255); a value the paper does not report for a setting is absent.
Source: ../shared/paper/protocol.md ("Reported numbers").
"""

from __future__ import annotations

from ntkbook.config import Profile

REPORTED: dict[tuple[str, float], dict[str, tuple[float, float]]] = {
    ("cifar10", 4): {"adversarial_training_clean": (81.58, 0.63),
                     "adversarial_training_robust": (51.77, 0.80)},
    ("cifar100", 4): {"adversarial_training_robust": (24.42, 0.14)},
    ("cifar10", 8): {"adversarial_training_robust": (35.80, 0.76)},
}


def reported(cfg: Profile, name: str) -> str:
    """``'81.58 ± 0.63'`` for the profile's dataset and eps, or ``'not reported'``."""
    value = REPORTED.get((cfg.dataset, cfg.eps_255), {}).get(name)
    return "not reported" if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"
