"""Where a cold book build's time goes, page by page: compilation against the rest.

    python benchmarks/book_split.py [--profile smoke] [--cache EMPTY_FOLDER]

Runs each page's code cells, in order, each page in a fresh Python process (as papermill's
kernels are), against one cache folder that starts empty, and reports per page: wall time,
JAX tracing + lowering, XLA compilation (from JAX's monitoring events), and the rest (training,
attacks, kernels, data, plotting). ``ntkbook build``'s own log gives each page's time under
papermill; the difference is kernel start-up. Results are recorded in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import collections, json, sys, time
import jax.monitoring, matplotlib
matplotlib.use("Agg")
totals = collections.Counter()
def listener(event, duration, **_):
    if "compile" in event or "trace" in event or "lower" in event or "mlir" in event:
        totals[event] += duration
jax.monitoring.register_event_duration_secs_listener(listener)
cells = json.loads(sys.argv[1])
start = time.perf_counter()
namespace = {"In": [""]}  # IPython's input history, which the validation cell reads
for source in cells:
    namespace["In"].append(source)
    exec(compile(source, "<cell>", "exec"), namespace)
wall = time.perf_counter() - start
print(json.dumps({"wall": wall, "events": dict(totals)}))
"""


def page_cells(path: Path, profile: str) -> list[str]:
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    cells[0] = f"profile = {profile!r}"
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--cache", help="an empty or new folder (default: a temporary one)")
    args = parser.parse_args()
    args.cache = args.cache or tempfile.mkdtemp(prefix="ntkbook-split-")
    if Path(args.cache).exists() and any(Path(args.cache).iterdir()):
        sys.exit(f"{args.cache} is not empty: a cold build needs an empty cache")
    sys.path.insert(0, str(ROOT))
    from ntkbook import book
    env = {**os.environ, "NTKBOOK_CACHE_DIR": args.cache}
    print("| page | wall | tracing + lowering | XLA compile | rest |")
    print("|---|---|---|---|---|")
    began = time.perf_counter()
    for document in book.notebooks():
        cells = page_cells(ROOT / f"{document}.ipynb", args.profile)
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cells)], env=env,
                             cwd=ROOT / "book", capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        result = json.loads(out.stdout.strip().splitlines()[-1])
        events = result["events"]
        backend = sum(v for k, v in events.items() if "backend_compile" in k)
        front = sum(v for k, v in events.items() if "backend_compile" not in k
                    and "compilation_cache" not in k)
        print(f"| {Path(document).name} | {result['wall']:.1f} s | {front:.1f} s | "
              f"{backend:.1f} s | {result['wall'] - front - backend:.1f} s |", flush=True)
    print(f"total {time.perf_counter() - began:.1f} s (with process start-up)")


if __name__ == "__main__":
    main()
