"""The ntkbook command line: build the book, run its jobs, farm them out, keep the cache.

Examples:

    ntkbook build --profile smoke                  # execute every notebook, render the HTML
    ntkbook build --profile cpu --from-results     # render the published run, no execution
    ntkbook plan --profile paper                   # one line per independent job
    ntkbook stage2 --profile paper --seed 0 --mode adversarial --spawn-epoch 10 \\
        --dynamics centered_standard --lr 0.0001 --update-bn
    ntkbook grid run --profile paper --executor slurm --partition gpu
    ntkbook grid status --profile paper
    ntkbook cache ls
    ntkbook publish --profile cpu

Every job writes into the content-addressed cache ($NTKBOOK_CACHE_DIR), which many workers
may share; ntkbook build then finds every result and computes only what is missing.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING

from ntkbook import grid, housekeeping
from ntkbook.config import MODES, Profile, ProfileError, available_profiles, load_profile

if TYPE_CHECKING:
    from ntkbook.jobs import Job

# Modules that import JAX, papermill or submitit are imported by the commands that use them,
# so that --help and argument errors answer at once.

JOB_COMMANDS = {"stage1": "train stage 1 of one (seed, mode) and evaluate it",
                "kernels": "compute the kernels of every checkpoint of one stage-1 run",
                "stage2": "train and evaluate one stage-2 network",
                "audit": "run the robustness audit of one seed's headline networks"}
STAGE2_DYNAMICS = ("linearized", "centered", "centered_standard")  # ntkbook.dynamics.DYNAMICS[1:]

EXPECTED_ERRORS = {"ntkbook.config": "ProfileError", "ntkbook.data": "DataError",
                   "ntkbook.book": "BookError", "ntkbook.store": "StoreError",
                   "ntkbook.train": "DivergenceError"}


def expected_errors() -> tuple[type[Exception], ...]:
    """The error classes reported in one line: those of :data:`EXPECTED_ERRORS` whose module
    is loaded (a module the command never imported raised nothing)."""
    return tuple(getattr(sys.modules[module], name) for module, name in EXPECTED_ERRORS.items()
                 if module in sys.modules)


def _add_profile(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--profile", default=default, required=default is None,
                        help=f"a profile name in parameters/ ({', '.join(available_profiles())})"
                             " or a path to a profile YAML file"
                             + (f" (default: {default})" if default else ""))


def _add_all_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all-settings", action="store_true",
                        help="also the profile's companion settings (parameters/<profile>-"
                             "cifar100.yaml, <profile>-eps8.yaml: the CIFAR-100 rows and "
                             "section 9), each with its own jobs")


def with_settings(profile: str, all_settings: bool) -> list[str]:
    """``profile``, and its companion settings' profiles when ``all_settings``."""
    from ntkbook import settings
    return [profile] + (list(settings.companions(profile).values()) if all_settings else [])


def _add_job_commands(commands) -> None:
    for name, text in JOB_COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(run=_job)
        _add_profile(sub)
        sub.add_argument("--seed", type=int, required=True, help="training seed")
        if name != "audit":
            sub.add_argument("--mode", required=True, choices=MODES,
                             help="stage-1 training mode (of the parent, for stage 2)")
        if name == "stage2":
            sub.add_argument("--spawn-epoch", type=float, required=True,
                             help="the stage-1 checkpoint epoch stage 2 starts from")
            sub.add_argument("--dynamics", required=True, choices=STAGE2_DYNAMICS,
                             help="stage-2 dynamics")
            sub.add_argument("--lr", type=float, help="learning rate (default: stage2_lr)")
            sub.add_argument("--update-bn", action="store_true",
                             help="BatchNorm statistics update during stage 2")
            sub.add_argument("--adversarial", action="store_true",
                             help="stage 2 on PGD examples of the stage-2 model")


def parser() -> argparse.ArgumentParser:
    summary, _, details = __doc__.partition("\n\n")
    main = argparse.ArgumentParser(prog="ntkbook", description=summary, epilog=details,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="command", required=True, metavar="command")
    build = commands.add_parser("build", help="execute every notebook and render the book",
                                description="Execute every notebook under a profile with "
                                            "papermill, then render the HTML book.")
    build.set_defaults(run=_build)
    _add_profile(build, default="smoke")
    build.add_argument("--only", nargs="*", metavar="NAME",
                       help="execute only the notebooks whose names contain one of these")
    build.add_argument("--jobs", type=int, metavar="N",
                       help="pages executed at once, the protocol page and the longest "
                            "first, the claims page last (default: 2 where there are 2 cores "
                            "or more; 1: one after the other)")
    build.add_argument("--jobs-first", action="store_true",
                       help="first compute the profile's independent jobs (ntkbook plan) in N "
                            "worker processes (--jobs), then execute the pages from the cache: "
                            "both cores busy for long profiles such as cpu")
    build.add_argument("--all-settings", action="store_true",
                       help="first build the profile's companion settings (parameters/"
                            "<profile>-cifar100.yaml, <profile>-eps8.yaml: the CIFAR-100 rows "
                            "and section 9), which its book shows beside its own pages (it "
                            "shows those already built or published without this)")
    build.add_argument("--from-results", action="store_true",
                       help="render the published notebooks of results/<profile>/ instead "
                            "of executing anything")
    build.add_argument("--force", action="store_true",
                       help="execute every page, also those whose source, profile, code and "
                            "data are unchanged since their last run (reused otherwise)")
    plan = commands.add_parser("plan", help="list the independent jobs of a profile",
                               description="Print one ntkbook command per independent job, "
                                           "in an order that respects their dependencies.")
    plan.set_defaults(run=_plan)
    _add_profile(plan)
    _add_all_settings(plan)
    plan.add_argument("--estimate", type=float, metavar="GFLOPS",
                      help="instead, print the profile's work per part (ntkbook.costs) and "
                           "its time at this many useful GFLOP/s (measure yours: "
                           "benchmarks/limits.py)")
    plan.add_argument("--survivors", type=float, default=1.0, metavar="FRACTION",
                      help="with --estimate: fraction of the audited images that survive the "
                           "book's PGD, so that the worst case's later attacks run on them "
                           "(default 1: the conservative count)")
    _add_job_commands(commands)
    grid.add_commands(commands, _add_profile, _add_all_settings)
    housekeeping.add_commands(commands)
    publish = commands.add_parser("publish", help="publish an executed build under results/",
                                  description="Copy the executed notebooks of the last build "
                                              "into results/<profile>/ with run.json and a "
                                              "README of the paper's claims.")
    publish.set_defaults(run=_publish)
    _add_profile(publish)
    return main


def _build(args: argparse.Namespace) -> int:
    from ntkbook import book
    html = book.build(args.profile, only=args.only, from_results=args.from_results,
                      jobs=args.jobs, force=args.force, jobs_first=args.jobs_first,
                      all_settings=args.all_settings)
    print(f"open {html / 'index.html'}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from ntkbook import costs, jobs
    if args.estimate is not None and (args.estimate <= 0 or not 0 <= args.survivors <= 1):
        raise SystemExit("ntkbook plan: --estimate must be > 0 and --survivors in [0, 1]")
    for profile in with_settings(args.profile, args.all_settings):
        cfg = load_profile(profile)
        if args.estimate is not None:
            print(costs.estimate(cfg, args.estimate, args.survivors))
        else:
            print("\n".join(f"ntkbook {' '.join(job.argv(profile))}" for job in jobs.plan(cfg)))
    return 0


def _job(args: argparse.Namespace) -> int:
    """Run one job of :data:`JOB_COMMANDS` into the cache."""
    from ntkbook import jobs
    from ntkbook.store import Store
    _raise_on_sigterm()
    cfg = load_profile(args.profile)
    print("\n".join(jobs.run(cfg, Store(), _job_from(args, cfg))))
    return 0


def _job_from(args: argparse.Namespace, cfg: Profile) -> Job:
    from ntkbook.experiment import NetworkId
    from ntkbook.jobs import Job
    if args.command != "stage2":
        return Job(args.command, args.seed, getattr(args, "mode", None))
    if args.spawn_epoch not in cfg.checkpoint_epochs:
        raise ProfileError(f"--spawn-epoch {args.spawn_epoch:g} is not a checkpoint epoch of "
                           f"profile {cfg.profile}")
    network = NetworkId(args.seed, args.mode, args.spawn_epoch, args.dynamics, lr=args.lr,
                        update_bn=args.update_bn, adversarial=args.adversarial)
    return Job("stage2", args.seed, args.mode, network)


def _publish(args: argparse.Namespace) -> int:
    from ntkbook import publish
    print(f"published {publish.publish(args.profile)}")
    return 0


def _raise_on_sigterm() -> None:
    """A scheduler's SIGTERM (time limit) unwinds like Ctrl-C: locks are released, and the
    run resumes from its last finished epoch next time."""
    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def configure_logging() -> None:
    """ntkbook's own progress at INFO; other libraries only warn."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("ntkbook").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging()
    try:
        return args.run(args)
    except expected_errors() as error:
        print(f"ntkbook: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
