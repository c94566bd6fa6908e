"""Clear failures before or instead of wrong results: divergence, unwritable cache, other data."""

import shutil
import subprocess
import sys

import pytest

from ntkbook import cli, config, data, experiment
from ntkbook.store import Store, StoreError
from ntkbook.train import DivergenceError
from tests.conftest import TINY


def test_divergence_stops_naming_run_epoch_and_step_and_caches_nothing_of_it(store):
    cfg = config.load_profile("smoke", **{**TINY, "stage1_lr": 100000.0})
    with pytest.raises(DivergenceError, match=r"stage 1 benign seed 0: training diverged at "
                                              r"epoch 0, step \d+ of 4"):
        experiment.ensure_stage1(cfg, 0, "benign", store)
    run = experiment.stage1_run(cfg, 0, "benign")
    assert not store.exists(run.checkpoint(0.5)) and not store.exists(run.checkpoint(1))
    assert not store.exists(run.progress(1))


def test_the_cli_reports_divergence_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    values = config.load_profile("smoke", **TINY).as_dict()
    bad.write_text("\n".join(f"{k}: {v!r}".replace("'", '"') for k, v in
                             {**values, "stage1_lr": 100000.0}.items()))
    result = subprocess.run([sys.executable, "-m", "ntkbook", "stage1", "--profile", str(bad),
                             "--seed", "0", "--mode", "benign"], capture_output=True, text=True,
                            env={**_env(tmp_path)})
    assert result.returncode == 2
    assert "ntkbook: error: stage 1 benign seed 0: training diverged at epoch 0" in result.stderr
    assert "Traceback" not in result.stderr


def _env(tmp_path):
    import os
    return {**os.environ, "NTKBOOK_CACHE_DIR": str(tmp_path / "cache")}


def test_an_unwritable_cache_folder_fails_before_any_compute(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="NTKBOOK_CACHE_DIR"):
        Store(blocker / "cache")
    monkeypatch.setenv("NTKBOOK_CACHE_DIR", str(blocker / "cache"))
    assert cli.main(["stage1", "--profile", "smoke", "--seed", "0", "--mode", "benign"]) == 2


def test_results_are_keyed_by_the_images_they_were_computed_on(tmp_path, monkeypatch):
    cfg = config.load_profile("smoke", **TINY)
    store = Store(tmp_path / "store")
    full = experiment.evaluate_stage1(cfg, 0, "benign", 1, store)
    fewer = tmp_path / "fewer" / "cifar-10-batches-bin"
    fewer.mkdir(parents=True)
    source = data.dataset_folder("cifar10")  # the data in use: NTKBOOK_DATA_DIR's, say
    shutil.copy(source / "data_batch_2.bin", fewer)
    raw = (source / "test_batch.bin").read_bytes()
    (fewer / "test_batch.bin").write_bytes(raw[:3073 * 2000])
    monkeypatch.setenv("NTKBOOK_DATA_DIR", str(fewer.parent))
    assert experiment.train_split(cfg).digest != ""
    other = experiment.evaluate_stage1(cfg, 0, "benign", 1, store)
    assert len(list((store.root / "evaluation").iterdir())) == 2  # not the cached result
    assert len(list((store.root / "checkpoint").iterdir())) == 2 * 3  # a new run, too
    assert other != full
