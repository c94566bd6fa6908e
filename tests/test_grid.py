"""The grid: many workers, one cache. Concurrency, kills and reruns leave exactly the results of
a sequential run."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ntkbook import config, experiment, housekeeping, jobs
from ntkbook.store import Store, read_entry
from tests.conftest import TINY

GRID = dict(TINY, modes=["benign", "adversarial"], stage1_epochs=2, fractional_epochs=[0.5],
            spawn_epochs=[2], sgd_comparison_spawn_epoch=2, n_kernel=10)


def profile_file(folder: Path, **overrides) -> Path:
    """A tiny profile as a YAML file (workers load it by path)."""
    values = config.load_profile("smoke", **{**GRID, **overrides}).as_dict()
    path = folder / f"grid-{len(list(folder.glob('grid-*')))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def ntkbook(*args, cache: Path, **kwargs) -> subprocess.Popen:
    """``ntkbook args`` in a subprocess on ``cache``, sharing this process's compiled programs."""
    import jax
    env = {**os.environ, "NTKBOOK_CACHE_DIR": str(cache),
           "NTKBOOK_XLA_CACHE_DIR": jax.config.jax_compilation_cache_dir or ""}
    return subprocess.Popen([sys.executable, "-m", "ntkbook", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def payloads(store: Store) -> dict[str, bytes]:
    """Every entry's payload bytes by file name (job markers and logs left aside)."""
    out = {}
    for path in store.entries():
        spec, data = read_entry(path)
        if spec["kind"] not in ("job", "job_failed"):
            out[path.name] = data
    return out


def test_two_local_workers_give_the_results_of_a_sequential_run(tmp_path):
    path = profile_file(tmp_path)
    cfg = config.load_profile(path)
    sequential = Store(tmp_path / "sequential")
    for job in jobs.plan(cfg):
        jobs.run(cfg, sequential, job)
    grid = ntkbook("grid", "run", "--profile", str(path), "--executor", "local", "--jobs", "2",
                   cache=tmp_path / "grid")
    output, _ = grid.communicate(timeout=900)
    assert grid.returncode == 0, output
    assert f"{len(jobs.plan(cfg))} jobs succeeded, 0 failed" in output
    assert payloads(Store(tmp_path / "grid")) == payloads(sequential)
    status = ntkbook("grid", "status", "--profile", str(path), cache=tmp_path / "grid")
    report, _ = status.communicate(timeout=120)
    assert status.returncode == 0, report
    again = ntkbook("grid", "run", "--profile", str(path), "--executor", "local",
                    cache=tmp_path / "grid")
    assert "0 of" in again.communicate(timeout=120)[0]  # nothing left to submit


def test_long_lived_workers_give_the_results_of_a_sequential_run(tmp_path, capsys):
    """What ``ntkbook build --jobs-first`` runs: two worker processes taking jobs in turn."""
    from ntkbook import grid
    path = profile_file(tmp_path)
    cfg = config.load_profile(path)
    sequential = Store(tmp_path / "sequential")
    for job in jobs.plan(cfg):
        jobs.run(cfg, sequential, job)
    workers = Store(tmp_path / "workers")
    assert grid.run_in_workers(cfg, str(path), workers, workers=2) == 0
    assert f"{len(jobs.plan(cfg))} jobs succeeded, 0 failed" in capsys.readouterr().out
    assert payloads(workers) == payloads(sequential)


def test_two_workers_racing_on_one_stage1_job_leave_one_valid_result(tmp_path):
    path = profile_file(tmp_path, stage1_epochs=6)
    cache = tmp_path / "cache"
    racers = [ntkbook("stage1", "--profile", str(path), "--seed", "0", "--mode", "adversarial",
                      cache=cache) for _ in range(2)]
    outputs = [r.communicate(timeout=600)[0] for r in racers]
    assert [r.returncode for r in racers] == [0, 0], outputs
    store = Store(cache)
    checked, corrupt = housekeeping.verify(store)
    assert corrupt == []
    cfg = config.load_profile(path)
    run = experiment.stage1_run(cfg, 0, "adversarial")
    expected = {store.path(run.checkpoint(e)).name for e in cfg.checkpoint_epochs}
    assert {p.name for p in (store.root / "checkpoint").iterdir()} == expected
    assert [p.name for p in (store.root / "progress").iterdir()] == [
        store.path(run.progress(6)).name]  # one run's progress, not two interleaved
    assert not list((store.root / ".locks").iterdir())
    reference = Store(tmp_path / "alone")
    experiment.ensure_stage1(cfg, 0, "adversarial", reference)
    mine = payloads(store)
    assert all(mine[name] == payload for name, payload in payloads(reference).items())


def test_a_failed_job_is_reported_with_its_log_and_its_dependents_are_not_run(tmp_path):
    path = profile_file(tmp_path, modes=["benign"], sgd_comparison_spawn_epoch=0,
                        stage1_lr=100000.0)
    grid = ntkbook("grid", "run", "--profile", str(path), "--executor", "local",
                   cache=tmp_path / "cache")
    output, _ = grid.communicate(timeout=300)
    assert grid.returncode == 1, output
    assert re.search(r"FAILED  stage1 seed 0 benign: .*training diverged at epoch 0.*"
                     r"\(log: \S+\.err\)", output), output
    assert "not run: a job it needs failed" in output
    status = ntkbook("grid", "status", "--profile", str(path), cache=tmp_path / "cache")
    report, _ = status.communicate(timeout=120)
    assert status.returncode == 1
    assert re.search(r"failed: stage1 seed 0 benign: DivergenceError: .* \(log: ", report), report


def test_a_killed_grid_is_completed_by_running_it_again(tmp_path):
    path = profile_file(tmp_path, stage1_epochs=8, modes=["adversarial"], spawn_epochs=[0],
                        sgd_comparison_spawn_epoch=0)
    cfg = config.load_profile(path)
    cache = tmp_path / "cache"
    grid = ntkbook("grid", "run", "--profile", str(path), "--executor", "local", cache=cache,
                   start_new_session=True)
    run = experiment.stage1_run(cfg, 0, "adversarial")
    store = Store(cache)
    deadline = time.time() + 300
    while not any(store.exists(run.progress(e)) for e in range(2, 8)):
        assert grid.poll() is None and time.time() < deadline, grid.stdout.read()
        time.sleep(0.05)
    os.killpg(grid.pid, signal.SIGKILL)  # the orchestrator and its worker, mid-epoch
    grid.wait()
    assert not jobs.is_done(cfg, store, jobs.Job("stage1", 0, "adversarial"))
    again = ntkbook("grid", "run", "--profile", str(path), "--executor", "local", cache=cache)
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output
    assert all(jobs.is_done(cfg, store, job) for job in jobs.plan(cfg))


@pytest.mark.skipif(not Path("/usr/sbin/slurmctld").exists(),
                    reason="SLURM is not installed (.ci/run installs slurm-wlm and munge)")
def test_the_grid_on_a_real_single_node_slurm(tmp_path, slurm):
    path = profile_file(tmp_path, modes=["benign"], sgd_comparison_spawn_epoch=0)
    cfg = config.load_profile(path)
    cache = tmp_path / "cache"
    submit = ntkbook("grid", "run", "--profile", str(path), "--executor", "slurm",
                     "--partition", slurm, "--timeout-min", "20", cache=cache)
    output, _ = submit.communicate(timeout=120)
    assert submit.returncode == 0, output
    assert f"submitted {len(jobs.plan(cfg))} jobs" in output
    deadline, status = time.time() + 600, None
    while time.time() < deadline:
        status = ntkbook("grid", "status", "--profile", str(path), cache=cache)
        report, _ = status.communicate(timeout=120)
        if status.returncode == 0:
            break
        assert "failed:" not in report, report
        time.sleep(3)
    assert status.returncode == 0, report


def test_a_failed_job_stops_a_jobs_first_build_before_its_pages(monkeypatch):
    from ntkbook import book, grid
    calls = []
    monkeypatch.setattr(grid, "run_in_workers",
                        lambda cfg, profile, store, workers: calls.append(workers) or 1)
    with pytest.raises(book.BookError, match="failed"):
        book.run_jobs_first(config.load_profile("smoke"), "smoke", 2)
    assert calls == [2]


@pytest.mark.parametrize("other", [{"only": ["protocol"]}, {"from_results": True}])
def test_jobs_first_goes_with_a_whole_build_only(other):
    from ntkbook import book
    with pytest.raises(book.BookError, match="jobs-first"):
        book.build("smoke", jobs_first=True, **other)
