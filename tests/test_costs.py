"""ntkbook.costs: a profile's work counted from the book's plan, against hand counts."""

import subprocess
import sys

import pytest

from ntkbook import config, costs
from tests.conftest import TINY


def test_benign_stage1_is_three_forwards_per_image_and_epoch():
    cfg = config.load_profile("smoke", **{**TINY, "modes": ["benign"], "seeds": [0, 1]})
    images = (cfg.n_train // cfg.batch_size) * cfg.batch_size
    assert costs.forward_units(cfg)["stage 1"] == 2 * images * cfg.stage1_epochs * 3


def test_the_adversarial_step_counts_its_pgd_iterations():
    cfg = config.load_profile("smoke", **{**TINY, "modes": ["adversarial"]})
    images = (cfg.n_train // cfg.batch_size) * cfg.batch_size
    per_step = 6 + 2 * cfg.train_pgd_steps  # clean step, k PGD iterations, adversarial step
    assert costs.forward_units(cfg)["stage 1"] == images * cfg.stage1_epochs * per_step


def test_the_worst_case_counts_later_attacks_on_the_survivors_only():
    cfg = config.load_profile("smoke", **TINY)
    first = 1 + 2 * cfg.eval_pgd_steps + 1  # clean prediction, the book's PGD and its check
    assert costs.ensemble_units(cfg, survivors=0.0) == first
    rest = costs.ensemble_units(cfg) - first
    assert costs.ensemble_units(cfg, survivors=0.25) == pytest.approx(first + rest / 4)
    assert rest > cfg.audit_queries * costs.SQUARE_QUERY[cfg.model]


def test_the_checklist_scales_with_its_images_and_the_worst_case_with_the_audited_ones():
    big = {**TINY, "n_test": 100, "audit_images": 100}
    cfg = config.load_profile("smoke", **{**big, "checklist_images": 20})
    whole = config.load_profile("smoke", **big)
    assert costs.forward_units(cfg)["audit"] < costs.forward_units(whole)["audit"]
    assert costs.forward_units(cfg)["worst cases"] == costs.forward_units(whole)["worst cases"]


def test_plan_prints_the_estimate_at_the_given_rate():
    out = subprocess.run([sys.executable, "-m", "ntkbook", "plan", "--profile", "smoke",
                          "--estimate", "10", "--survivors", "0.5"],
                         capture_output=True, text=True, check=True).stdout
    cfg = config.load_profile("smoke")
    total = sum(costs.forward_units(cfg, 0.5).values()) * costs.forward_flops(cfg)
    assert f"{total / 10e9 / 60:.0f} minutes at 10 GFLOP/s" in out
    assert all(f"  {part}: " in out for part in costs.PARTS)


def test_the_worst_case_counts_the_survivors_batch_as_padded():
    cfg = config.load_profile("smoke", **{**TINY, "audit_images": 40})
    first = costs.ensemble_units(cfg, survivors=0.0)
    rest = costs.ensemble_units(cfg) - first
    one = costs.worst_case_units(cfg, survivors=1 / 40)  # one survivor runs in a batch of 20
    assert one == pytest.approx(40 * first + 20 * rest)
    assert costs.worst_case_units(cfg) == pytest.approx(40 * (first + rest))
