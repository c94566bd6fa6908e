"""Shared fixtures: a tiny profile on the real CIFAR sample, and a private store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ntkbook import config
from ntkbook.store import Store

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "NTKBOOK_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["NTKBOOK_DATA_DIR"] = str(SHARED_DATA)

TINY = dict(width=4, n_train=100, n_test=50, n_kernel=20, batch_size=25, eval_batch_size=50,
            seeds=[0], stage1_epochs=3, flip_epoch=1, fractional_epochs=[0.5],
            train_pgd_steps=2, eval_pgd_steps=3, spawn_epochs=[0, 1, 3], stage2_epochs=1)


@pytest.fixture
def tiny() -> config.Profile:
    """A profile small enough to train in seconds: width-4 CNN, 100 images, 3 epochs."""
    return config.load_profile("smoke", **TINY)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")
