"""Cache housekeeping: ntkbook cache ls | verify | gc.

- ls: entries and bytes per kind (and the compiled-program cache);
- verify: check every entry's checksum; report and remove the corrupt ones;
- gc --keep-profile P ...: remove the entries no listed profile uses (a dry run unless --delete).
  An entry is used by a profile when every training run it derives from is a run of that
  profile, it was computed on that profile's data and test settings, or it is one of that
  profile's job markers.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ntkbook.config import Profile, load_profile

if TYPE_CHECKING:  # ntkbook's modules that import JAX are imported where used: --help is quick
    from ntkbook.store import Spec, Store


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def listing(store: Store) -> list[tuple[str, int, int]]:
    """(kind, entries, bytes) per kind, then the compiled-program cache."""
    from ntkbook.compilation import FOLDER as XLA_FOLDER
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for path in store.entries():
        counts[path.parent.name][0] += 1
        counts[path.parent.name][1] += path.stat().st_size
    rows = [(kind, n, size) for kind, (n, size) in sorted(counts.items())]
    xla = store.root / XLA_FOLDER
    if xla.is_dir():
        rows.append((f"{XLA_FOLDER} (compiled programs)", sum(1 for _ in xla.iterdir()),
                     _size(xla)))
    return rows


def verify(store: Store) -> tuple[int, list[tuple[Path, str]]]:
    """Check every entry; remove the corrupt ones. Returns (entries checked, [(path, why)])."""
    from ntkbook.store import SUFFIX, read_entry, spec_key
    checked, corrupt = 0, []
    for path in store.entries():
        checked += 1
        try:
            spec, _ = read_entry(path)
            if path.name != f"{spec_key(spec)}{SUFFIX}":
                raise ValueError("file name does not match its spec")
        except (OSError, ValueError, KeyError) as error:
            corrupt.append((path, str(error)))
            path.unlink(missing_ok=True)
    return checked, corrupt


@dataclasses.dataclass
class Usage:
    """What the kept profiles use: their runs, data digests, test settings and job markers."""

    runs: set[str] = dataclasses.field(default_factory=set)
    digests: set[str] = dataclasses.field(default_factory=set)
    test_specs: list[Spec] = dataclasses.field(default_factory=list)
    markers: set[str] = dataclasses.field(default_factory=set)

    def add(self, cfg: Profile) -> None:
        from ntkbook import experiment, jobs
        from ntkbook.store import spec_key
        for seed in cfg.seeds:
            for mode in cfg.modes:
                self.runs.add(spec_key(experiment.stage1_run(cfg, seed, mode).spec))
        for job in jobs.plan(cfg):
            if job.network is not None:
                n = job.network
                run = experiment.stage2_run(cfg, n.seed, n.mode, n.epoch, n.dynamics,
                                            **n.options())
                self.runs.add(spec_key(run.spec))
            self.markers.add(spec_key(jobs.marker_spec(cfg, job)))
        self.digests |= {experiment.train_split(cfg).digest, experiment.test_split(cfg).digest}
        self.test_specs.append(experiment.test_spec(cfg))

    def uses(self, spec: Spec) -> bool:
        from ntkbook.store import spec_key
        if spec["kind"] in ("job", "job_failed"):
            return spec_key(dict(spec, kind="job")) in self.markers
        runs = list(_nested(spec, "run"))
        if not runs or any(spec_key(run) not in self.runs for run in runs):
            return False
        if any(digest not in self.digests for digest in _nested(spec, "data")):
            return False
        return any(all(spec.get(k, v) == v for k, v in test.items() if k != "kind")
                   for test in self.test_specs)


def _nested(value: Any, key: str) -> Iterator[Any]:
    """Every value stored under ``key`` anywhere inside ``value``."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from _nested(v, key)
    elif isinstance(value, list):
        for v in value:
            yield from _nested(v, key)


def unused(store: Store, profiles: list[Profile]) -> list[Path]:
    """Entries (and stray files or folders) that no profile of ``profiles`` uses."""
    from ntkbook.store import read_entry
    usage = Usage()
    for cfg in profiles:
        usage.add(cfg)
    out = []
    for kind in (p for p in store.root.iterdir() if not p.name.startswith(".")):
        for path in (kind.iterdir() if kind.is_dir() else [kind]):
            try:
                spec, _ = read_entry(path)
                keep = usage.uses(spec)
            except (OSError, ValueError, KeyError):
                keep = False  # corrupt, or not an entry (an old cache layout)
            if not keep:
                out.append(path)
    return out


def add_commands(commands) -> None:
    cache = commands.add_parser("cache", help="list, verify or clean the cache",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = cache.add_subparsers(dest="action", required=True, metavar="action")
    actions.add_parser("ls", help="entries and bytes per kind").set_defaults(run=_ls)
    actions.add_parser("verify", help="check every checksum; remove corrupt entries"
                       ).set_defaults(run=_verify)
    gc = actions.add_parser("gc", help="remove entries no listed profile uses (dry run "
                                       "unless --delete)")
    gc.add_argument("--keep-profile", nargs="+", required=True, metavar="PROFILE",
                    help="profiles whose entries are kept")
    gc.add_argument("--delete", action="store_true", help="really remove them")
    gc.set_defaults(run=_gc)


def _ls(_: argparse.Namespace) -> int:
    from ntkbook.store import Store
    store = Store()
    rows = listing(store)
    print(f"cache {store.root}")
    for kind, n, size in rows:
        print(f"  {kind:<34} {n:>7} entries {_human(size):>10}")
    print(f"  {'total':<34} {sum(r[1] for r in rows):>7} entries "
          f"{_human(sum(r[2] for r in rows)):>10}")
    return 0


def _verify(_: argparse.Namespace) -> int:
    from ntkbook.store import Store
    checked, corrupt = verify(Store())
    for path, why in corrupt:
        print(f"corrupt, removed: {path} ({why})")
    print(f"{checked} entries checked, {len(corrupt)} corrupt")
    return 1 if corrupt else 0


def _gc(args: argparse.Namespace) -> int:
    from ntkbook.store import Store
    store = Store()
    paths = unused(store, [load_profile(name) for name in args.keep_profile])
    size = sum(_size(p) for p in paths)
    verb = "removed" if args.delete else "would remove"
    for path in paths:
        if args.delete:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    print(f"{verb} {len(paths)} entries ({_human(size)}) that no profile of "
          f"{', '.join(args.keep_profile)} uses" + ("" if args.delete else
                                                    "; add --delete to remove them"))
    return 0
