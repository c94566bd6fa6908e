"""The book's jobs on a cluster (SLURM) or on this machine, through submitit.

ntkbook grid run --profile P --executor {local,slurm} submits every job of the profile's plan
(ntkbook plan) that is not done yet:

- slurm: stage-1 jobs as one job array; the kernels and stage-2 jobs of each stage-1 run as an
  array that starts afterok that run; each seed's audit afterok every stage-1 and stage-2 job
  of its seed. Returns after submitting and prints the job ids.
- local: at most --jobs jobs at once on this machine, each a subprocess started as soon as its
  dependencies succeeded, one GPU each (CUDA_VISIBLE_DEVICES) when --gpus-per-job is set and
  the machine has GPUs. Blocks until done; exit status 0 only if every job succeeded.

Every worker writes into the same cache folder (it may be on NFS or Lustre): entries are
written atomically, one worker trains a run while another waits for it, and a killed worker
leaves a run that resumes from its last finished epoch. A failed job records its error and log
in the cache; running the command again submits only what is not done.
ntkbook grid status --profile P counts done / failed / missing jobs per kind from the cache
(and, for SLURM, pending / running from squeue).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ntkbook.config import Profile, load_profile, profile_path

if TYPE_CHECKING:  # jobs and store import JAX: imported where used, so that --help is quick
    import submitit

    from ntkbook.jobs import Job
    from ntkbook.store import Store

log = logging.getLogger(__name__)

STATE = "submitted.json"


def _submitit():
    """submitit, imported when a grid runs (its import binds log handlers to the streams of
    the moment, which must be the process's real ones)."""
    import submitit
    return submitit


def run_job(profile: str, job: Job, cache_root: str) -> list[str]:
    """What a worker runs: one job into the shared cache; a failure is recorded there with
    the worker's log before it propagates."""
    from ntkbook import jobs
    from ntkbook.store import Store

    def on_sigterm(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)  # unwind: locks released, progress kept
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("ntkbook").setLevel(logging.INFO)
    cfg, store = load_profile(profile), Store(cache_root)
    try:
        return jobs.run(cfg, store, job)
    except BaseException as error:
        try:
            where = str(_submitit().JobEnvironment().paths.stderr)
        except RuntimeError:
            where = ""
        jobs.record_failure(cfg, store, job, f"{type(error).__name__}: {error}", where)
        raise


def grid_folder(store: Store, cfg: Profile) -> Path:
    return store.root / ".grid" / cfg.profile


def _pending(cfg: Profile, store: Store) -> tuple[list[Job], list[Job]]:
    """The whole plan, and its jobs that are not done."""
    from ntkbook import jobs
    plan = jobs.plan(cfg)
    return plan, [job for job in plan if not jobs.is_done(cfg, store, job)]


# --- local --------------------------------------------------------------------------------

def local_gpus() -> list[int]:
    """GPU indices this machine offers (``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi``)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(g) for g in visible.split(",") if g.strip().isdigit()]
    if shutil.which("nvidia-smi") is None:
        return []
    listed = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True)
    return list(range(len(listed.stdout.splitlines()))) if listed.returncode == 0 else []


# a started job (a future or a submitit job: both have done() and result()) and what frees
# the resources it holds
Started = tuple["concurrent.futures.Future | submitit.Job", Callable[[], None]]


def run_local(cfg: Profile, profile: str, store: Store, *, max_jobs: int, gpus_per_job: int,
              timeout_min: int, folder: Path, poll_seconds: float = 0.5) -> int:
    """Run every job that is not done, each in a subprocess (submitit), at most ``max_jobs``
    at once; 0 iff all succeed."""
    gpus = local_gpus() if gpus_per_job else []
    if gpus_per_job and gpus:
        max_jobs = min(max_jobs, len(gpus) // gpus_per_job)
    executor = _submitit().LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=timeout_min)
    free = list(gpus)

    def start(job: Job) -> Started:
        mine = [free.pop(0) for _ in range(gpus_per_job)] if gpus else []
        executor.update_parameters(visible_gpus=mine, gpus_per_node=len(mine))
        return executor.submit(run_job, profile, job, str(store.root)), lambda: free.extend(mine)

    return _schedule(cfg, store, max_jobs, start, poll_seconds)


def run_in_workers(cfg: Profile, profile: str, store: Store, *, workers: int,
                   poll_seconds: float = 0.2) -> int:
    """Run every job that is not done in ``workers`` long-lived processes, each taking the
    next ready job as it finishes one (imports and compiled programs are paid once per
    worker, not per job); 0 iff all succeed."""
    with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        def start(job: Job) -> Started:
            return pool.submit(run_job, profile, job, str(store.root)), lambda: None

        return _schedule(cfg, store, workers, start, poll_seconds)


def _schedule(cfg: Profile, store: Store, max_jobs: int, start: Callable[[Job], Started],
              poll_seconds: float) -> int:
    """Start each pending job through ``start`` once its dependencies succeeded, at most
    ``max_jobs`` running; ``start`` returns the running job and what frees its resources.
    Reports each job as it ends; 0 iff all succeed."""
    from ntkbook import jobs
    plan, pending = _pending(cfg, store)
    todo = set(pending)
    waits = {job: [d for d in jobs.dependencies(cfg, job, plan) if d in todo] for job in pending}
    print(f"{len(pending)} of {len(plan)} jobs to run, at most {max_jobs} at once", flush=True)
    running: dict[Job, tuple[concurrent.futures.Future | submitit.Job, Callable[[], None],
                             float]] = {}
    finished: set[Job] = set()
    failed: dict[Job, str] = {}
    began = time.time()
    while pending or running:
        for job in list(pending):
            if any(d in failed for d in waits[job]):
                pending.remove(job)
                failed[job] = "not run: a job it needs failed"
            elif len(running) < max_jobs and all(d in finished for d in waits[job]):
                running[job] = (*start(job), time.time())
                pending.remove(job)
        time.sleep(poll_seconds)
        for job, (submitted, release, since) in list(running.items()):
            if not submitted.done():
                continue
            del running[job]
            release()
            try:
                submitted.result()
                finished.add(job)
                print(f"done    {job.label} ({time.time() - since:.0f} s; "
                      f"{len(finished)} of {len(todo)}, {(time.time() - began) / 60:.1f} min)",
                      flush=True)
            except Exception as error:  # noqa: BLE001 - reported, the grid goes on
                recorded = jobs.failure(cfg, store, job)
                why = recorded["error"] if recorded else f"{type(error).__name__}: {error}"
                where = getattr(getattr(submitted, "paths", None), "stderr", None)
                failed[job] = why.strip().splitlines()[0] + (f" (log: {where})" if where else "")
                print(f"FAILED  {job.label}: {failed[job]}", flush=True)
    for job, why in failed.items():
        print(f"failed: {job.label}: {why}")
    print(f"{len(finished)} jobs succeeded, {len(failed)} failed"
          + ("; run the same command again to retry them" if failed else ""))
    return 1 if failed else 0


# --- slurm --------------------------------------------------------------------------------

def submit_slurm(cfg: Profile, profile: str, store: Store, executor: "submitit.Executor",
                 folder: Path) -> dict[str, str]:
    """Submit every job that is not done with afterok dependencies; returns {label: job id}."""
    from ntkbook import jobs
    from ntkbook.jobs import Job
    plan, pending = _pending(cfg, store)
    ids: dict[Job, str] = {}

    def submit(group: list[Job], after: list[str]) -> None:
        if not group:
            return
        extra = {"kill-on-invalid-dep": "yes"}
        if after:
            extra["dependency"] = "afterok:" + ":".join(after)
        executor.update_parameters(slurm_additional_parameters=extra)
        with executor.batch():
            submitted = [executor.submit(run_job, profile, job, str(store.root))
                         for job in group]
        ids.update((job, s.job_id) for job, s in zip(group, submitted, strict=True))

    submit([j for j in pending if j.command == "stage1"], [])
    children = collections.defaultdict(list)
    for job in pending:
        if job.command in ("kernels", "stage2"):
            children[Job("stage1", job.seed, job.mode)].append(job)
    for parent, group in children.items():
        submit(group, [ids[parent]] if parent in ids else [])
    for job in (j for j in pending if j.command == "audit"):
        submit([job], [ids[d] for d in jobs.dependencies(cfg, job, plan) if d in ids])
    labels = {job.label: job_id for job, job_id in ids.items()}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATE).write_text(json.dumps({"executor": "slurm", "jobs": labels}, indent=1))
    return labels


def _squeue_states(job_ids: list[str]) -> dict[str, str]:
    """``{job id: PENDING | RUNNING | ...}`` for the jobs SLURM still knows."""
    if not job_ids or shutil.which("squeue") is None:
        return {}
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(job_ids)],
                         capture_output=True, text=True)
    return dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)


# --- status -------------------------------------------------------------------------------

def status(cfg: Profile, store: Store, folder: Path) -> tuple[dict[str, collections.Counter],
                                                              list[tuple[str, dict]]]:
    """Per job kind, counts of done / failed / missing (and scheduler states), and the
    failures with their errors and logs."""
    from ntkbook import jobs
    state_file = folder / STATE
    submitted = json.loads(state_file.read_text())["jobs"] if state_file.is_file() else {}
    queue = _squeue_states(list(submitted.values()))
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures = []
    for job in jobs.plan(cfg):
        tally = counts[job.command]
        if jobs.is_done(cfg, store, job):
            tally["done"] += 1
            continue
        scheduled = queue.get(submitted.get(job.label, ""))
        if scheduled:
            tally[scheduled.lower()] += 1
        failed = jobs.failure(cfg, store, job)
        if failed is not None and not scheduled:
            tally["failed"] += 1
            failures.append((job.label, failed))
        else:
            tally["missing"] += 1
    return counts, failures


# --- command line -------------------------------------------------------------------------

def add_commands(commands, add_profile, add_all_settings) -> None:
    grid = commands.add_parser("grid", help="run a profile's jobs on SLURM or this machine",
                               description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = grid.add_subparsers(dest="action", required=True, metavar="action")
    run = actions.add_parser("run", help="submit every job that is not done")
    add_profile(run)
    add_all_settings(run)
    run.add_argument("--executor", required=True, choices=("local", "slurm"),
                     help="local: subprocesses on this machine; slurm: sbatch job arrays")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="local: at most N jobs at once (default 1)")
    run.add_argument("--partition", help="slurm: the partition to submit to")
    run.add_argument("--gpus-per-job", type=int, default=0,
                     help="GPUs per job (local: a distinct CUDA_VISIBLE_DEVICES per job)")
    run.add_argument("--cpus-per-job", type=int, default=None, help="slurm: CPUs per job")
    run.add_argument("--timeout-min", type=int, default=24 * 60,
                     help="each job's time limit in minutes (default 1440); a job stopped "
                          "there resumes from its last finished epoch when resubmitted")
    run.add_argument("--folder", type=Path,
                     help="submitit's job files and logs (default <cache>/.grid/<profile>)")
    run.set_defaults(run=_run)
    show = actions.add_parser("status", help="done / failed / missing jobs per kind")
    add_profile(show)
    add_all_settings(show)
    show.add_argument("--folder", type=Path, help="as given to grid run")
    show.set_defaults(run=_status)


def _folder(args: argparse.Namespace, store: Store, cfg: Profile) -> Path:
    """submitit's folder for ``cfg``'s jobs: ``--folder`` (one sub-folder per setting with
    ``--all-settings``), else :func:`grid_folder`."""
    if args.folder is None:
        return grid_folder(store, cfg)
    return args.folder / cfg.profile if args.all_settings else args.folder


def _run(args: argparse.Namespace) -> int:
    from ntkbook.cli import with_settings
    status = 0
    for profile in with_settings(args.profile, args.all_settings):  # each its own grid
        status = max(status, _run_profile(args, profile))
    return status


def _run_profile(args: argparse.Namespace, name: str) -> int:
    from ntkbook.store import Store
    cfg, store = load_profile(name), Store()
    profile = str(profile_path(name).resolve())
    folder = _folder(args, store, cfg)
    if args.executor == "local":
        return run_local(cfg, profile, store, max_jobs=max(1, args.jobs),
                         gpus_per_job=args.gpus_per_job, timeout_min=args.timeout_min,
                         folder=folder)
    executor = _submitit().AutoExecutor(folder=folder, cluster="slurm")
    parameters = {"timeout_min": args.timeout_min, "nodes": 1, "tasks_per_node": 1,
                  "slurm_job_name": f"ntkbook-{cfg.profile}"}
    if args.partition:
        parameters["slurm_partition"] = args.partition
    if args.gpus_per_job:
        parameters["gpus_per_node"] = args.gpus_per_job
    if args.cpus_per_job:
        parameters["cpus_per_task"] = args.cpus_per_job
    executor.update_parameters(**parameters)
    submitted = submit_slurm(cfg, profile, store, executor, folder)
    for label, job_id in submitted.items():
        print(f"{job_id}\t{label}")
    print(f"submitted {len(submitted)} jobs; watch them with: ntkbook grid status "
          f"--profile {name}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ntkbook.cli import with_settings
    return max(_status_profile(args, profile)
               for profile in with_settings(args.profile, args.all_settings))


def _status_profile(args: argparse.Namespace, name: str) -> int:
    from ntkbook.store import Store
    cfg, store = load_profile(name), Store()
    folder = _folder(args, store, cfg)
    counts, failures = status(cfg, store, folder)
    columns = ["done", "failed", "missing", "pending", "running"]
    print(f"profile {cfg.profile}: {sum(sum(c.values()) for c in counts.values())} jobs")
    print(f"  {'kind':<8}" + "".join(f"{c:>9}" for c in columns))
    for kind, tally in counts.items():
        print(f"  {kind:<8}" + "".join(f"{tally.get(c, 0):>9}" for c in columns))
    for label, failed in failures:
        print(f"failed: {label}: {failed['error']}" + (f" (log: {failed['log']})"
                                                       if failed.get("log") else ""))
    complete = all(set(t) == {"done"} for t in counts.values())
    return 0 if complete else 1
