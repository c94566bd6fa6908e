#!/usr/bin/env bash
# The GPU run in one call: benchmarks and the `gpu` profile's book on a machine with one GPU
# and nothing installed but Python 3.12 with JAX (CUDA), flax, optax and matplotlib, no
# network; everything else travels with the working tree (wheels in .whl/, CIFAR in .data/).
#
#   benchmarks/gpu.sh --prepare     here, where PyPI works: download the wheels into .whl/,
#                                   copy the profile's CIFAR subset into .data/, record the
#                                   commit, and check that tree + .whl + .data fit in 64 MiB
#                                   (--fetch-wheels is the same)
#   benchmarks/gpu.sh               on the GPU machine (carry .whl and .data): install the
#                                   wheels, execute every page under the profile, publish
#                                   it, `make benchmarks` until the 8-minute mark, and leave
#                                   $OUT/gpu-run.tar.gz (<= 16 MiB), $OUT/gpu.log (wall time
#                                   per step) and $OUT/gpu-output.log (everything printed)
#   benchmarks/gpu.sh --dry-run     the same flow on this CPU, smoke profile, benchmarks only
#                                   imported (--help): a rehearsal of everything but the GPU
#   benchmarks/gpu.sh --fresh ...   forget the last run's cache and pages first (by default a
#                                   second call on a warm machine resumes from them)
#   benchmarks/gpu.sh --data        only refresh .data/ (after changing the profile's sizes)
#   benchmarks/gpu.sh --archive     only archive what _build/gpu-run holds into $OUT (the
#                                   run's last step)
#
# The book comes first: it is the result. The benchmarks then run until NTKBOOK_GPU_TARGET
# seconds from the start (default 465: the whole script under 8 minutes), at least 60 s; rows
# they print are kept when they are stopped (in full they compile for minutes, mostly the
# blocked kernel layouts of kernel_throughput.py). The book itself is stopped at
# NTKBOOK_GPU_DEADLINE (default 540 s) minus 75 s, in time to publish and archive what it has
# before the device's 600 s.
#
# Environment: NTKBOOK_GPU_PROFILE (default gpu; smoke with --dry-run), NTKBOOK_GPU_PYTHON
# (default python3), NTKBOOK_GPU_JOBS (pages at once, default ntkbook's), NTKBOOK_GPU_TARGET,
# NTKBOOK_GPU_DEADLINE, OUT (default _build/gpu-run/out), NTKBOOK_GPU_WORK (default
# _build/gpu-run), NTKBOOK_GPU_SITE (where the wheels are installed, default /tmp/site),
# NTKBOOK_GPU_DATA (where --prepare and --data write the CIFAR subset, default .data; read from
# NTKBOOK_DATA_DIR, default ../shared/data). Pages are executed into _build/gpu-run/book and
# published into _build/gpu-run/results/<profile>, not results/ (benchmarks/GPU.md: reading
# the archive). A run on the device sets NTKBOOK_DATA_DIR to .data and NTKBOOK_CACHE_DIR to
# _build/gpu-run/cache.
# The device call:  run(command="bash benchmarks/gpu.sh", carry=[".whl", ".data"], timeout_s=600)
set -euo pipefail
export PYTHONUNBUFFERED=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# The wheels that a Python with only jax, jaxlib, flax, optax and matplotlib (and what they
# require) lacks, pinned to the versions of the project's .venv: papermill, nbformat, nbclient,
# jupyter_client and ipykernel with their required dependencies; tqdm (ntkbook.progress); and
# myst-nb, whose glue() every page calls, with docutils, the one module of its Sphinx stack
# that glue() imports (its other requirements are for rendering, which this run skips: the
# Sphinx stack is over 40 MB). Not carried: aiohttp, which papermill requires on Python 3.12
# only and never imports; pooch (downloads; NTKBOOK_DATA_DIR is set) and submitit (clusters),
# which ntkbook imports only when used. tests/test_gpu_script.py checks this list.
WHEELS=(
  papermill==2.7.0
  click==8.5.1
  entrypoints==0.4.2
  tenacity==9.2.1
  requests==2.34.2
  urllib3==2.8.0
  charset-normalizer==3.5.3
  idna==3.21
  certifi==2026.10.19.post1
  tqdm==4.70.1
  nbformat==5.11.1
  fastjsonschema==2.22.3
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  referencing==0.37.0
  rpds-py==2026.9.1
  attrs==26.1.0
  nbclient==0.11.0
  jupyter_client==8.10.0
  jupyter_core==5.9.1
  platformdirs==4.14.9
  traitlets==5.16.1
  pyzmq==27.3.0
  tornado==6.6.1
  ipykernel==7.4.0
  comm==0.2.3
  debugpy==1.8.22
  matplotlib-inline==0.2.2
  nest-asyncio2==1.7.4
  ipython==9.19.1
  ipython_pygments_lexers==1.1.1
  prompt_toolkit==3.0.53
  wcwidth==0.9.5
  jedi==0.20.1
  parso==0.8.7
  pexpect==4.9.0
  ptyprocess==0.7.0
  stack-data==0.6.3
  asttokens==3.0.2
  executing==2.3.0
  pure_eval==0.2.4
  myst-nb==1.4.0
  docutils==0.21.2
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)
CARRY_LIMIT=$((64 * 1024 * 1024))      # the working tree that travels, with .whl and .data
ARCHIVE_LIMIT=$((16 * 1024 * 1024))    # one file back from $OUT

MODE=run
FRESH=0
for arg in "$@"; do
  case "$arg" in
    --prepare|--fetch-wheels) MODE=prepare ;;
    --dry-run) MODE=dry-run ;;
    --data) MODE=data ;;
    --archive) MODE=archive ;;
    --fresh) FRESH=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

if [[ $MODE == dry-run ]]; then
  PROFILE=${NTKBOOK_GPU_PROFILE:-smoke}
else
  PROFILE=${NTKBOOK_GPU_PROFILE:-gpu}
fi
WORK=${NTKBOOK_GPU_WORK:-$ROOT/_build/gpu-run}
HELPER=$(mktemp /tmp/ntkbook-gpu-XXXXXX.py)
trap 'rm -f "$HELPER"' EXIT

# --- helpers in Python (run by whichever interpreter the mode uses) -----------------------
cat > "$HELPER" <<'PY'
"""benchmarks/gpu.sh's Python steps: python3 HELPER <command> [arguments]."""
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))  # ntkbook from this tree


def tree_sha256():
    """What a run's outputs depend on here: ntkbook's code, the pages, the profiles."""
    files = sorted(ROOT.glob("ntkbook/**/*.py")) + sorted(
        p for p in (ROOT / "book").iterdir() if p.is_file()) + sorted(
        ROOT.glob("parameters/*.yaml"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def source_json():
    """The commit the tree was prepared from (the GPU machine's copy has no .git)."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "ntkbook", "book",
                     "parameters"))
    print(json.dumps({"commit": git("rev-parse", "HEAD") or "unknown", "dirty": dirty,
                      "tree_sha256": tree_sha256(),
                      "prepared": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))


def select_wheels(folder):
    """The wheels of folder whose distribution this Python lacks (one path a line); those it
    has are used as they are (carried copies would shadow the machine's own)."""
    for wheel in sorted(Path(folder).glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            print(wheel)
            continue
        print(f"gpu.sh: {name} {have} is installed here; the carried {version} is not used",
              file=sys.stderr)


def data_subset(source, target, profile):
    """Copy the shortest prefix of each split's records that holds 10 % more than the
    profile's images of every class (n_train; n_test), in the official layout."""
    import numpy as np
    from ntkbook import config, data
    cfg = config.load_profile(profile)
    archive = data.ARCHIVES[cfg.dataset]
    src, dst = Path(source) / archive.folder, Path(target) / archive.folder
    dst.mkdir(parents=True, exist_ok=True)
    for old in dst.iterdir():
        old.unlink()
    for names, n in ((archive.train_files, cfg.n_train), (archive.test_files, cfg.n_test)):
        need = -(-n * 11 // (10 * archive.num_classes))
        counts = np.zeros(archive.num_classes, int)
        for name in names:
            if not (src / name).is_file():
                continue
            _, labels = data.read_records(src / name, archive)
            counts_at = counts + np.cumsum(np.eye(archive.num_classes, dtype=int)[labels], 0)
            enough = np.flatnonzero((counts_at >= need).all(1))
            take = int(enough[0]) + 1 if len(enough) else len(labels)
            with open(src / name, "rb") as handle:
                (dst / name).write_bytes(handle.read(take * archive.record_bytes))
            indices = src / f"{Path(name).stem}_indices.txt"  # original index per record
            if indices.is_file():
                lines = indices.read_text().splitlines(keepends=True)[:take]
                (dst / indices.name).write_text("".join(lines))
            counts = counts_at[take - 1]
            if len(enough):
                break
        if counts.min() < n // archive.num_classes:
            sys.exit(f"gpu.sh: {src} has too few images for {n} balanced ones")
        print(f"{dst}: {int(counts.sum())} records for {n} images (per class "
              f"{int(counts.min())}-{int(counts.max())})")
    for path in src.glob("*.txt"):  # class names
        if not path.name.endswith("_indices.txt"):
            (dst / path.name).write_bytes(path.read_bytes())


def build(profile, work):
    """`ntkbook build` without the HTML (no Sphinx here): every page executed into
    work/book/source, work/book/build.json written, exactly as book.build does it."""
    from ntkbook import book, provenance
    from ntkbook.cli import configure_logging
    configure_logging()
    if not hasattr(book, "_render"):
        sys.exit("gpu.sh: ntkbook.book._render is gone; update the build step of gpu.sh")
    book._render = lambda staging, output, everything=True: output / "_build" / "html"
    source = ROOT / ".whl" / "SOURCE.json"
    recorded = provenance.code_version

    def code_version():
        """The commit from .whl/SOURCE.json where this copy has no .git."""
        found = recorded()
        if not found.startswith("unknown") or not source.is_file():
            return found
        prepared = json.loads(source.read_text())
        same = prepared["tree_sha256"] == tree_sha256() and not prepared["dirty"]
        return prepared["commit"] + ("" if same else "+changes")

    provenance.code_version = code_version
    jobs = int(os.environ.get("NTKBOOK_GPU_JOBS") or 0) or None
    try:
        book.build(profile, output=Path(work) / "book", jobs=jobs)
    except book.BookError as error:
        sys.exit(f"gpu.sh: {error}")
    record = json.loads((Path(work) / "book" / book.BUILD_RECORD).read_text())
    print(f"built {profile} in {record['total_wall_seconds']:.0f} s (code {record['code']}): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in record["wall_seconds"].items()))


def publish(profile, work):
    """`ntkbook publish` of that build into work/results/<profile> (run.json, README.md and
    the readable notebooks), leaving results/ and README.md of the repository alone."""
    from ntkbook import publish as publishing
    from ntkbook.cli import configure_logging
    configure_logging()
    target = publishing.publish(profile, built=Path(work) / "book",
                                results=Path(work) / "results")
    run = json.loads((target / "run.json").read_text())
    print(f"published {target}: headline {run['headline']}, {len(run['claims'])} claims")


def check_imports():
    """Everything the run imports, before it starts: a missing wheel fails here, in seconds."""
    import importlib
    for module in ("yaml", "scipy.stats", "tqdm", "nbformat", "jupyter_client", "papermill",
                   "ipykernel.kernelspec", "IPython", "myst_nb.ext.glue", "matplotlib_inline",
                   "ntkbook.book", "ntkbook.publish", "ntkbook.jobs"):
        importlib.import_module(module)
    import jax
    print(f"imports ok; jax {jax.__version__}, backend {jax.default_backend()}, "
          f"devices {jax.devices()}")
    return jax.default_backend()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    result = {"source-json": source_json, "select-wheels": select_wheels,
              "data-subset": data_subset, "build": build, "publish": publish,
              "check-imports": check_imports}[command](*args)
    if command == "check-imports" and os.environ.get("NTKBOOK_GPU_REQUIRE") == "gpu" \
            and result != "gpu":
        sys.exit(f"gpu.sh: JAX runs on {result}, not a GPU: is this the GPU machine, with "
                 f"JAX's CUDA build? (--dry-run rehearses on a CPU)")
PY

# --- prepare: here, where PyPI works ---------------------------------------------------
DATA_SOURCE=${NTKBOOK_DATA_DIR:-$ROOT/../shared/data}
DATA_TARGET=${NTKBOOK_GPU_DATA:-$ROOT/.data}
if [[ $MODE == prepare || $MODE == data ]]; then
  PY=${NTKBOOK_GPU_PYTHON:-$ROOT/.venv/bin/python}
  [[ -x $PY ]] || PY=python3
fi
if [[ $MODE == data ]]; then
  "$PY" "$HELPER" data-subset "$DATA_SOURCE" "$DATA_TARGET" "$PROFILE"
  exit 0
fi
if [[ $MODE == prepare ]]; then
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")"
  for path in /.whl/ /.data/; do  # ignored here, so that only `carry` takes them along
    grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >> "$exclude"
  done
  mkdir -p .whl
  rm -f .whl/*.whl
  platforms=()
  for p in "${PLATFORMS[@]}"; do platforms+=(--platform "$p"); done
  echo "downloading ${#WHEELS[@]} wheels for CPython 3.12, manylinux x86_64, into .whl/"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl "${WHEELS[@]}"
  count=$(ls .whl/*.whl | wc -l)
  if (( count != ${#WHEELS[@]} )); then
    echo "gpu.sh: .whl/ holds $count wheels, expected ${#WHEELS[@]} (one per pin)" >&2; exit 1
  fi
  "$PY" "$HELPER" source-json > .whl/SOURCE.json
  "$PY" "$HELPER" data-subset "$DATA_SOURCE" "$DATA_TARGET" "$PROFILE"
  tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | sort -zu |
          xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
  wheels=$(du -cb .whl | tail -1 | cut -f1)
  data=$(du -cb "$DATA_TARGET" | tail -1 | cut -f1)
  total=$((tree + wheels + data))
  awk -v t="$tree" -v w="$wheels" -v d="$data" -v s="$total" -v l=$((CARRY_LIMIT / 1048576)) \
    'BEGIN {m = 1048576; printf "tree %.1f MiB + .whl %.1f MiB + .data %.1f MiB = %.1f MiB",
            t / m, w / m, d / m, s / m; printf " of %d MiB\n", l}'
  if (( total > CARRY_LIMIT )); then
    echo "gpu.sh: too much to carry: shrink the profile's n_train/n_test or the tree" >&2
    exit 1
  fi
  echo "ready: run(command=\"bash benchmarks/gpu.sh\", carry=[\".whl\", \".data\"], timeout_s=600)"
  exit 0
fi

# --- run (GPU), dry-run (CPU) or archive ------------------------------------------------
PY=${NTKBOOK_GPU_PYTHON:-python3}
START=$(date +%s)
TARGET=${NTKBOOK_GPU_TARGET:-465}
DEADLINE=${NTKBOOK_GPU_DEADLINE:-540}
RESERVE=75  # seconds kept after the book for publishing (at most 60) and the archive
OUT=${OUT:-$WORK/out}
SITE=${NTKBOOK_GPU_SITE:-/tmp/site}
LOG=$WORK/logs/gpu.log
FAILED=()

elapsed() { echo $(( $(date +%s) - START )); }
note() { echo "[$(elapsed) s] $*" | tee -a "$LOG"; }

# step NAME LIMIT COMMAND...: run COMMAND (output to the terminal and logs/NAME.log) within
# LIMIT seconds (0: no limit), and log its wall time; a failure is recorded, not fatal
step() {
  local name=$1 limit=$2 began rc seconds
  shift 2
  began=$(date +%s.%N)
  if (( limit > 0 )); then
    note "step $name: start (limit $limit s)"
  else
    note "step $name: start"
  fi
  set +e
  if (( limit > 0 )); then
    timeout -k 15 "$limit" "$@" 2>&1 | tee "$WORK/logs/$name.log"
  else
    "$@" 2>&1 | tee "$WORK/logs/$name.log"
  fi
  rc=${PIPESTATUS[0]}
  set -e
  seconds=$(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  if (( rc == 0 )); then
    note "step $name: ok in $seconds s"
  else
    if (( limit > 0 && (rc == 124 || rc == 137) )); then
      note "step $name: stopped at its limit of $limit s"
    fi
    note "step $name: FAILED (exit $rc) after $seconds s"
    FAILED+=("$name")
  fi
  return "$rc"
}

# archive: the executed pages, build.json, the published run (run.json, README.md, readable
# pages) and the logs, as $OUT/gpu-run.tar.gz of at most 16 MiB (else without the executed
# copies, else nothing and a failure)
archive() {
  local items=() kept=() item size
  for item in book/build.json book/source/book "results/$PROFILE" logs; do
    if [[ -e $WORK/$item ]]; then items+=("$item"); fi
  done
  if (( ${#items[@]} == 0 )); then
    note "archive: FAILED, $WORK holds nothing to archive"; FAILED+=(archive); return
  fi
  tar czf "$OUT/gpu-run.tar.gz" -C "$WORK" "${items[@]}"
  size=$(stat -c %s "$OUT/gpu-run.tar.gz")
  if (( size > ARCHIVE_LIMIT )); then
    note "archive: $((size / 1024)) KiB is over 16 MiB; leaving out book/source/book"
    for item in "${items[@]}"; do
      if [[ $item != book/source/book ]]; then kept+=("$item"); fi
    done
    items=("${kept[@]}")
    tar czf "$OUT/gpu-run.tar.gz" -C "$WORK" "${items[@]}"
    size=$(stat -c %s "$OUT/gpu-run.tar.gz")
  fi
  if (( size > ARCHIVE_LIMIT )); then
    note "archive: FAILED, $((size / 1024)) KiB is over 16 MiB even so; largest files:"
    (cd "$WORK" && find "${items[@]}" -type f -printf '%s %p\n' | sort -rn | head -5) |
      tee -a "$LOG"
    rm -f "$OUT/gpu-run.tar.gz"
    FAILED+=(archive)
  else
    note "archive: $OUT/gpu-run.tar.gz, $((size / 1024)) KiB (${items[*]})"
  fi
}

finish() {
  if (( ${#FAILED[@]} )); then
    note "done in $(elapsed) s; FAILED: ${FAILED[*]}"
  else
    note "done in $(elapsed) s"
  fi
  cp "$LOG" "$OUT/gpu.log"
  if [[ -f $WORK/logs/gpu-output.log ]]; then cp "$WORK/logs/gpu-output.log" "$OUT/"; fi
  (( ${#FAILED[@]} == 0 ))
}

mkdir -p "$WORK/logs" "$OUT"
if [[ $MODE == archive ]]; then
  archive
  finish
  exit
fi

export NTKBOOK_DATA_DIR=${NTKBOOK_DATA_DIR:-$ROOT/.data}
export NTKBOOK_CACHE_DIR=$WORK/cache
if [[ $MODE == dry-run ]]; then
  export JAX_PLATFORMS=cpu NTKBOOK_GPU_REQUIRE=cpu
else
  export NTKBOOK_GPU_REQUIRE=gpu
fi
if (( FRESH )); then rm -rf "$WORK"; fi
rm -rf "$WORK/logs" "$WORK/results"
mkdir -p "$WORK/logs" "$OUT"
: > "$LOG"
exec > >(tee "$WORK/logs/gpu-output.log") 2>&1

note "gpu.sh $MODE: profile $PROFILE, python $PY, work $WORK, out $OUT, deadline $DEADLINE s"
for needed in "$NTKBOOK_DATA_DIR" .whl; do
  if [[ ! -d $needed ]]; then
    note "gpu.sh: $needed is missing: run benchmarks/gpu.sh --prepare here, carry .whl and .data"
    exit 1
  fi
done

install() {
  rm -rf "$SITE"
  mapfile -t wanted < <(env -u PYTHONPATH "$PY" "$HELPER" select-wheels .whl)
  echo "installing ${#wanted[@]} of $(ls .whl/*.whl | wc -l) carried wheels into $SITE"
  if (( ${#wanted[@]} == 0 )); then return; fi
  if "$PY" -m pip --version > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
      "${wanted[@]}"
  else  # no pip: a wheel without dependencies or scripts is its files, unzipped
    echo "no pip for $PY: unzipping the wheels into $SITE"
    for wheel in "${wanted[@]}"; do "$PY" -m zipfile -e "$wheel" "$SITE"; done
  fi
}
step install 0 install || { archive; finish; exit 1; }
export PYTHONPATH=$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}

machine() {
  "$PY" -c "import sys, jax, flax, optax, matplotlib as mpl
print('python', sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__,
      'optax', optax.__version__, 'matplotlib', mpl.__version__)"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  fi
  echo "$(nproc) cores"
  "$PY" "$HELPER" check-imports
}
step machine 0 machine || { archive; finish; exit 1; }

remaining=$(( DEADLINE - $(elapsed) - RESERVE ))
if (( remaining < 60 )); then
  note "step book: not started, only $remaining s left before the deadline"
  FAILED+=(book)
elif step book "$remaining" "$PY" "$HELPER" build "$PROFILE" "$WORK"; then
  step publish 60 "$PY" "$HELPER" publish "$PROFILE" "$WORK" || true
fi

# `make benchmarks` until the target (its recipe read from the Makefile where make is
# missing); on --dry-run each of its scripts is only imported (--help)
limit=$(( TARGET - $(elapsed) ))
(( limit >= 60 )) || limit=60
if (( $(elapsed) + limit > DEADLINE )); then limit=$(( DEADLINE - $(elapsed) )); fi
if (( limit < 10 )); then
  note "step benchmarks: not started, the deadline is near"
  FAILED+=(benchmarks)
else
  if [[ $MODE == run ]] && command -v make > /dev/null; then
    benchmarks=(make benchmarks PYTHON="$PY")
  else
    recipe=$(awk '/^benchmarks:/ {on = 1; next}
                  on && /^\t/ {sub(/^\t/, ""); print; next}
                  on {exit}' Makefile | sed "s|\$(PYTHON)|$PY|g")
    if [[ $MODE == dry-run ]]; then recipe=$(sed 's/$/ --help > \/dev\/null/' <<< "$recipe"); fi
    benchmarks=(bash -c "set -ex; $recipe")
  fi
  step benchmarks "$limit" "${benchmarks[@]}" || {
    rc=$?
    if (( rc == 124 || rc == 137 )); then  # stopped at the target, as planned: not a failure
      kept=()
      for name in "${FAILED[@]}"; do [[ $name == benchmarks ]] || kept+=("$name"); done
      FAILED=("${kept[@]}")
      note "benchmarks: stopped at the ${TARGET} s target, as planned; the rows they" \
           "printed are in logs/benchmarks.log"
    fi
  }
fi
archive
finish
