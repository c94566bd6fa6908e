"""Command line: build the book, and run the paper's independent jobs one by one.

    ntkbook build [--profile smoke] [--only protocol]
    ntkbook plan --profile paper          # one line per independent job, in order
    ntkbook stage1 --profile paper --seed 0 --mode adversarial
    ntkbook kernels --profile paper --seed 0 --mode adversarial
    ntkbook stage2 --profile paper --seed 0 --mode adversarial --spawn-epoch 10 \
        --dynamics centered_standard --lr 0.0001 --update-bn

Jobs write into the content-addressed cache (``$NTKBOOK_CACHE_DIR``): run them anywhere,
then merge the cache folders (e.g. with rsync) and build the book, which finds every result.
``plan`` lists the stage-1 jobs first: every later job needs the stage-1 runs of its seed
(a stage-2 job trains a missing parent itself, but then two machines may train it twice).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from typing import Any

from ntkbook import book, experiment, kernel_study, sweeps, tables
from ntkbook.config import Profile, ProfileError, load_profile
from ntkbook.data import DataError
from ntkbook.store import Store, spec_key

DYNAMICS = ("standard", "linearized", "centered", "centered_standard")


def stage2_jobs(cfg: Profile, seed: int) -> Iterator[tuple[str, float, str, dict[str, Any]]]:
    """(mode, spawn epoch, dynamics, options) of every stage-2 run of the book, no repeats:
    section 4 (benign data from every spawn epoch), Table 1 and Table 2."""
    jobs = [(mode, float(t), dynamics, {}) for mode in sweeps.modes(cfg)
            for t in cfg.spawn_epochs for dynamics in sweeps.STAGE2_DYNAMICS]
    if "adversarial" in cfg.modes:
        jobs += [("adversarial", cfg.sgd_comparison_spawn_epoch, dynamics, options)
                 for dynamics, options in tables.sgd_comparison_children(cfg).values()]
    if {"benign", "adversarial"} <= set(cfg.modes):
        jobs += [(mode, t, "centered", {"adversarial": adversarial})
                 for mode, t in tables.base_kernel_parents(cfg).values()
                 for adversarial in (False, True)]
    seen = set()
    for mode, t, dynamics, options in jobs:
        key = spec_key(experiment.stage2_run(cfg, seed, mode, t, dynamics, **options).spec)
        if key not in seen:
            seen.add(key)
            yield mode, t, dynamics, options


def _flags(options: dict[str, Any]) -> str:
    flags = [f" --lr {options['lr']:g}" if "lr" in options else "",
             " --update-bn" if options.get("update_bn") else "",
             " --adversarial" if options.get("adversarial") else ""]
    return "".join(flags)


def plan(cfg: Profile) -> Iterator[str]:
    """Independent jobs: stage 1 and its kernels per (seed, mode), then each stage-2 run."""
    name = cfg.profile
    for command in ("stage1", "kernels"):
        for seed in cfg.seeds:
            for mode in cfg.modes:
                yield f"ntkbook {command} --profile {name} --seed {seed} --mode {mode}"
    for seed in cfg.seeds:
        for mode, t, dynamics, options in stage2_jobs(cfg, seed):
            yield (f"ntkbook stage2 --profile {name} --seed {seed} --mode {mode} "
                   f"--spawn-epoch {t:g} --dynamics {dynamics}{_flags(options)}")


def run_stage1(cfg: Profile, seed: int, mode: str, store: Store) -> None:
    experiment.ensure_stage1(cfg, seed, mode, store)
    for epoch in sorted(set(cfg.spawn_epochs) | {float(cfg.stage1_epochs)}):
        result = experiment.evaluate_stage1(cfg, seed, mode, epoch, store)
        print(f"{mode} seed {seed} epoch {epoch:g}: clean {result['clean']:.2f}%, "
              f"PGD {result['robust']:.2f}%")


def run_kernels(cfg: Profile, seed: int, mode: str, store: Store) -> None:
    """Every kernel of section 3 for one stage-1 run (sections 6 and 8 reuse them)."""
    statistics = kernel_study.kernel_evolution(cfg, store, seed, mode,
                                               list(cfg.checkpoint_epochs))
    print(f"{mode} seed {seed}: final effective rank {statistics['effective_rank'][-1]:.2f}")


def run_stage2(cfg: Profile, seed: int, mode: str, spawn_epoch: float, dynamics: str,
               store: Store, **options: Any) -> None:
    """Train and evaluate one stage-2 run; section 4 runs also get their section 4-5 numbers."""
    network = experiment.stage2_network(cfg, seed, mode, spawn_epoch, dynamics, store,
                                        **options)
    result = experiment.evaluation(cfg, store, network)
    print(f"{network.label}: clean {result['clean']:.2f}%, PGD {result['robust']:.2f}%")
    if not options and mode in sweeps.modes(cfg):
        if dynamics == "linearized":
            print(f"relative magnitude {experiment.relative_magnitude(cfg, store, network):.4f}")
        target = sweeps.final_network(cfg, store, seed, mode)
        print(f"tau {experiment.transferability(cfg, store, network, target):.3f}")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="ntkbook", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="execute every notebook and render the book")
    build.add_argument("--profile", default="smoke")
    build.add_argument("--only", nargs="*", help="execute only notebooks matching these names")
    for name in ("plan", "stage1", "kernels", "stage2"):
        sub = commands.add_parser(name)
        sub.add_argument("--profile", required=True)
        if name != "plan":
            sub.add_argument("--seed", type=int, required=True)
            sub.add_argument("--mode", required=True, choices=("benign", "adversarial", "flip"))
        if name == "stage2":
            sub.add_argument("--spawn-epoch", type=float, required=True)
            sub.add_argument("--dynamics", required=True, choices=DYNAMICS)
            sub.add_argument("--lr", type=float, help="default: the profile's stage2_lr")
            sub.add_argument("--update-bn", action="store_true",
                             help="BatchNorm statistics update during stage 2")
            sub.add_argument("--adversarial", action="store_true",
                             help="stage 2 on PGD examples of the stage-2 model")
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
        elif args.command == "kernels":
            run_kernels(cfg, args.seed, args.mode, Store())
        else:
            if args.spawn_epoch not in cfg.checkpoint_epochs:
                raise ProfileError(f"--spawn-epoch {args.spawn_epoch:g} is not a checkpoint "
                                   f"epoch of profile {cfg.profile}")
            options = {k: v for k, v in (("lr", args.lr), ("update_bn", args.update_bn),
                                         ("adversarial", args.adversarial)) if v}
            run_stage2(cfg, args.seed, args.mode, args.spawn_epoch, args.dynamics, Store(),
                       **options)
    except (ProfileError, DataError, book.BookError) as error:
        print(f"ntkbook: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
