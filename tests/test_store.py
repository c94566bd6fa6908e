import json
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from ntkbook import config, experiment
from ntkbook.store import Store

from tests.conftest import TINY


def test_save_load_roundtrip_keeps_nested_arrays(store):
    spec = {"kind": "demo", "x": 1}
    store.save(spec, {"a": {"b": np.arange(3.0)}, "n": 2})
    loaded = store.load(spec)
    assert np.array_equal(loaded["a"]["b"], np.arange(3.0)) and loaded["n"] == 2
    assert store.load({"kind": "demo", "x": 2}) is None


def test_flipped_byte_is_detected_and_recomputed(store, caplog):
    spec = {"kind": "demo"}
    calls = []

    def compute():
        calls.append(1)
        return {"value": np.ones(1000)}

    store.get_or_compute(spec, compute)
    entry = store.path(spec)
    raw = bytearray(entry.read_bytes())
    raw[-len(raw) // 4] ^= 0xFF  # a byte of the payload
    entry.write_bytes(bytes(raw))
    result = store.get_or_compute(spec, compute)
    assert len(calls) == 2 and np.array_equal(result["value"], np.ones(1000))
    assert "corrupted cache entry" in caplog.text


def test_two_workers_asking_for_one_entry_compute_it_once(store):
    calls, results = [], []

    def compute():
        calls.append(1)
        time.sleep(1.0)  # the other worker asks meanwhile
        return {"value": np.arange(4)}

    workers = [threading.Thread(target=lambda: results.append(
        store.get_or_compute({"kind": "demo"}, compute)["value"])) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(calls) == 1 and all(np.array_equal(r, np.arange(4)) for r in results)
    assert len(results) == 2


def test_unrelated_parameters_do_not_change_stage1_keys(tiny):
    run = experiment.stage1_run(tiny, 0, "adversarial").spec
    same = config.load_profile("smoke", **{**TINY, "stage2_lr": 0.5, "eval_pgd_steps": 9,
                                           "n_test": 100, "stage1_epochs": 5,
                                           "spawn_epochs": [2]})
    assert experiment.stage1_run(same, 0, "adversarial").spec == run
    assert experiment.stage1_run(config.load_profile("smoke", **{**TINY, "eps_255": 8}), 0,
                                 "adversarial").spec != run
    # benign training does not depend on eps: paper and paper-eps8 share those runs
    assert experiment.stage1_run(config.load_profile("smoke", **{**TINY, "eps_255": 8}), 0,
                                 "benign").spec == experiment.stage1_run(tiny, 0, "benign").spec


def test_new_stage2_learning_rate_reuses_stage1(tiny, store):
    experiment.ensure_stage1(tiny, 0, "benign", store)
    experiment.evaluate_stage2(tiny, 0, "benign", 1, "centered", store)
    checkpoints = sorted((store.root / "checkpoint").iterdir())
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    other = config.load_profile("smoke", **{**TINY, "stage2_lr": 0.05})
    experiment.evaluate_stage2(other, 0, "benign", 1, "centered", store)
    assert experiment.ensure_stage1(other, 0, "benign", store) == []
    after = sorted((store.root / "checkpoint").iterdir())
    old = [p for p in after if p in checkpoints]
    assert [p.stat().st_mtime_ns for p in old] == stamps  # no stage-1 entry rewritten
    assert len(after) == len(checkpoints) + 1  # only the new stage-2 result was added


KILL_EPOCHS = 20
CHILD = """
import json, sys
from ntkbook import config, experiment
from ntkbook.store import Store
cfg = config.load_profile("smoke", **json.loads(sys.argv[1]))
experiment.ensure_stage1(cfg, 0, "adversarial", Store(sys.argv[2]))
"""


def final_params(cfg, store):
    return experiment.stage1_variables(cfg, 0, "adversarial", cfg.stage1_epochs, store)


def test_killed_stage1_resumes_to_identical_weights(tmp_path):
    overrides = {**TINY, "stage1_epochs": KILL_EPOCHS, "spawn_epochs": [0]}
    cfg = config.load_profile("smoke", **overrides)
    killed = Store(tmp_path / "killed")
    run = experiment.stage1_run(cfg, 0, "adversarial")
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(overrides),
                              str(killed.root)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not any(killed.exists(run.progress(e)) for e in range(3, KILL_EPOCHS)):
        assert child.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    finished = max(e for e in range(KILL_EPOCHS + 1) if killed.exists(run.progress(e)))
    assert finished < KILL_EPOCHS
    stamps = {e: killed.path(run.checkpoint(e)).stat().st_mtime_ns for e in range(finished + 1)}

    resumed = experiment.ensure_stage1(cfg, 0, "adversarial", killed)

    assert resumed == list(range(finished, KILL_EPOCHS))  # no finished epoch recomputed
    assert {e: killed.path(run.checkpoint(e)).stat().st_mtime_ns for e in stamps} == stamps
    reference = Store(tmp_path / "uninterrupted")
    assert experiment.ensure_stage1(cfg, 0, "adversarial", reference) == list(range(KILL_EPOCHS))
    a, b = final_params(cfg, killed), final_params(cfg, reference)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.array_equal(u, v)


def test_lost_fractional_checkpoint_is_rebuilt_identically(tiny, store):
    experiment.ensure_stage1(tiny, 0, "benign", store)
    spec = experiment.stage1_run(tiny, 0, "benign").checkpoint(0.5)
    before = store.load(spec)
    store.delete(spec)
    assert experiment.ensure_stage1(tiny, 0, "benign", store) == [0, 1, 2]  # replayed
    after = store.load(spec)
    for u, v in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after),
                    strict=True):
        assert np.array_equal(u, v)


@pytest.mark.parametrize("mode", ["benign", "flip"])
def test_same_profile_and_seed_give_identical_accuracies(tiny, tmp_path, mode):
    results = [
        (experiment.evaluate_stage1(tiny, 0, mode, tiny.stage1_epochs, Store(tmp_path / name)),
         experiment.evaluate_stage2(tiny, 0, mode, 1, "linearized", Store(tmp_path / name)))
        for name in ("first", "second")]
    assert results[0] == results[1]


def test_cached_evaluation_does_not_touch_the_checkpoint(tiny, store):
    first = experiment.evaluate_stage1(tiny, 0, "benign", 1, store)
    checkpoint = experiment.stage1_run(tiny, 0, "benign").checkpoint(1)
    store.delete(checkpoint)
    assert experiment.evaluate_stage1(tiny, 0, "benign", 1, store) == first
    assert not store.exists(checkpoint)  # neither loaded nor retrained
