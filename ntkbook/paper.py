"""The paper's reported numbers (mean, std over 3 seeds), for side-by-side tables.

Keyed by (dataset, eps_255); a value the paper does not report for a setting is absent.
Source: ../shared/paper/protocol.md ("Reported numbers").
"""

from __future__ import annotations

from ntkbook.config import Profile
from ntkbook.report import format_pm

REPORTED: dict[tuple[str, float], dict[str, tuple[float, float]]] = {
    ("cifar10", 4): {"adversarial_training_clean": (81.58, 0.63),
                     "adversarial_training_robust": (51.77, 0.80),
                     "centered_final_adversarial_robust": (55.46, 1.79),
                     "centered_spawn10_adversarial_robust": (62.09, 1.76),
                     "centered_final_benign_robust": (41.41, 9.75)},
    ("cifar100", 4): {"adversarial_training_robust": (24.42, 0.14),
                      "centered_final_adversarial_robust": (27.35, 0.41),
                      "centered_final_benign_robust": (14.16, 1.03)},
    ("cifar10", 8): {"adversarial_training_robust": (35.80, 0.76),
                     "centered_final_adversarial_robust": (49.15, 3.49),
                     "centered_final_benign_robust": (32.29, 8.36)},
}


def reported(cfg: Profile, name: str) -> str:
    """``'81.58 ± 0.63'`` for the profile's dataset and eps, or ``'not reported'``."""
    value = REPORTED.get((cfg.dataset, cfg.eps_255), {}).get(name)
    return "not reported" if value is None else format_pm(*value)

# Tables 1 and 2 (CIFAR-10, eps 4/255 only): {row: {column: (mean, std)}}.
TABLE1 = {
    "parent": {"clean": (78.33, 1.07), "robust": (48.73, 1.52)},
    "frozen BN, centering": {"clean": (81.73, 0.76), "robust": (62.09, 1.76),
                             "distance": (0.0, 0.0)},
    "frozen BN, SGD lr 0.0001": {"clean": (82.11, 0.68), "robust": (44.99, 0.75),
                                 "distance": (0.0140, 0.0009)},
    "frozen BN, SGD lr 0.01": {"clean": (82.21, 0.96), "robust": (44.39, 1.23),
                               "distance": (0.0290, 0.0042)},
    "updating BN, centering": {"clean": (30.80, 9.76), "robust": (19.45, 6.21),
                               "distance": (0.0012, 0.0001)},
    "updating BN, SGD lr 0.0001": {"clean": (52.46, 18.47), "robust": (20.91, 8.69),
                                   "distance": (0.0228, 0.0061)},
    "updating BN, SGD lr 0.01": {"clean": (43.22, 17.72), "robust": (14.28, 5.92),
                                 "distance": (0.0624, 0.0151)},
}
TABLE2 = {
    "K_0 (initialisation)": {"benign clean": (34.11, 1.35), "benign robust": (0.00, 0.00),
                             "adversarial clean": (10.46, 0.66),
                             "adversarial robust": (6.27, 4.45)},
    "K_T benign": {"benign clean": (85.06, 0.75), "benign robust": (41.41, 9.75),
                   "adversarial clean": (84.85, 0.65), "adversarial robust": (76.15, 1.91)},
    "K_T adversarial": {"benign clean": (79.65, 0.30), "benign robust": (55.46, 1.79),
                        "adversarial clean": (81.23, 0.57),
                        "adversarial robust": (57.50, 1.56)},
    "standard adversarial training": {"benign clean": (81.58, 0.63),
                                      "benign robust": (51.77, 0.80)},
}
TABLES = {"table1": TABLE1, "table2": TABLE2}


def table_value(cfg: Profile, table: str, row: str, column: str) -> tuple[float, float] | None:
    """The paper's (mean, std) in ``table`` (``'table1'`` or ``'table2'``), or None where the
    paper reports nothing (other datasets, eps, learning rates or cells)."""
    if (cfg.dataset, cfg.eps_255) != ("cifar10", 4):
        return None
    return TABLES[table].get(row, {}).get(column)
