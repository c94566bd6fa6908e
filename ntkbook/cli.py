"""Command line: build the book, and run the paper's independent jobs one by one.

    ntkbook build [--profile smoke] [--only protocol]
    ntkbook plan --profile paper          # one line per independent job
    ntkbook stage1 --profile paper --seed 0 --mode adversarial
    ntkbook stage2 --profile paper --seed 0 --mode adversarial --spawn-epoch 10 --dynamics centered

Jobs write into the content-addressed cache (``$NTKBOOK_CACHE_DIR``): run them anywhere,
then merge the cache folders (e.g. with rsync) and build the book, which finds every result.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator

from ntkbook import book, experiment
from ntkbook.config import Profile, ProfileError, load_profile
from ntkbook.data import DataError
from ntkbook.store import Store

SECTION4_MODES = ("benign", "adversarial")
SECTION4_DYNAMICS = ("linearized", "centered")


def plan(cfg: Profile) -> Iterator[str]:
    """Independent jobs: stage 1 per (seed, mode), then stage 2 per (seed, mode, t, dynamics)."""
    name = cfg.profile
    for seed in cfg.seeds:
        for mode in cfg.modes:
            yield f"ntkbook stage1 --profile {name} --seed {seed} --mode {mode}"
    for seed in cfg.seeds:
        for mode in (m for m in SECTION4_MODES if m in cfg.modes):
            for t in cfg.spawn_epochs:
                for dynamics in SECTION4_DYNAMICS:
                    yield (f"ntkbook stage2 --profile {name} --seed {seed} --mode {mode} "
                           f"--spawn-epoch {t:g} --dynamics {dynamics}")


def run_stage1(cfg: Profile, seed: int, mode: str, store: Store) -> None:
    experiment.ensure_stage1(cfg, seed, mode, store)
    for epoch in sorted(set(cfg.spawn_epochs) | {float(cfg.stage1_epochs)}):
        result = experiment.evaluate_stage1(cfg, seed, mode, epoch, store)
        print(f"{mode} seed {seed} epoch {epoch:g}: clean {result['clean']:.2f}%, "
              f"PGD {result['robust']:.2f}%")


def run_stage2(cfg: Profile, seed: int, mode: str, spawn_epoch: float, dynamics: str,
               store: Store) -> None:
    result = experiment.evaluate_stage2(cfg, seed, mode, spawn_epoch, dynamics, store)
    print(f"{dynamics} on {mode} t={spawn_epoch:g} seed {seed}: clean {result['clean']:.2f}%, "
          f"PGD {result['robust']:.2f}%")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="ntkbook", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="execute every notebook and render the book")
    build.add_argument("--profile", default="smoke")
    build.add_argument("--only", nargs="*", help="execute only notebooks matching these names")
    for name in ("plan", "stage1", "stage2"):
        sub = commands.add_parser(name)
        sub.add_argument("--profile", required=True)
        if name != "plan":
            sub.add_argument("--seed", type=int, required=True)
            sub.add_argument("--mode", required=True, choices=("benign", "adversarial", "flip"))
        if name == "stage2":
            sub.add_argument("--spawn-epoch", type=float, required=True)
            sub.add_argument("--dynamics", required=True,
                             choices=("standard", "linearized", "centered", "centered_standard"))
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        if args.command == "build":
            html = book.build(args.profile, only=args.only)
            print(f"open {html / 'index.html'}")
            return 0
        cfg = load_profile(args.profile)
        if args.command == "plan":
            print("\n".join(plan(cfg)))
        elif args.command == "stage1":
            run_stage1(cfg, args.seed, args.mode, Store())
        else:
            if args.spawn_epoch not in cfg.checkpoint_epochs:
                raise ProfileError(f"--spawn-epoch {args.spawn_epoch:g} is not a checkpoint "
                                   f"epoch of profile {cfg.profile}")
            run_stage2(cfg, args.seed, args.mode, args.spawn_epoch, args.dynamics, Store())
    except (ProfileError, DataError, book.BookError) as error:
        print(f"ntkbook: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
