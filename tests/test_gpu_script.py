"""benchmarks/gpu.sh, the GPU run in one call, tested on a CPU as far as a CPU allows: the
script's syntax and modes, its wheel list against what ntkbook, the pages and the benchmarks
import (and what those wheels require), the CIFAR subset it carries, its archive against the
16 MiB limit, and the `gpu` profile's time on one H100 (the arithmetic quoted in
parameters/gpu.yaml; ``python tests/test_gpu_script.py`` prints it).

What needs the GPU itself is not tested here: the run's real wall time, JAX's CUDA build and
`make benchmarks` on the device. A full rehearsal on this CPU (smoke profile, Python 3.12 with
only jax, flax, optax and matplotlib installed) is ``NTKBOOK_GPU_PYTHON=<that python>
benchmarks/gpu.sh --dry-run --fresh`` (about 6 minutes on 2 cores; not run by the tests).
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
MIB = 2 ** 20

# What a Python with JAX's CUDA build, flax, optax and matplotlib has: those and everything
# they require (their closure is computed from the installed metadata).
BASE = ("jax", "jaxlib", "flax", "optax", "matplotlib")
# Required by a carried wheel, deliberately not carried (never imported by the run)
NOT_CARRIED = {"aiohttp": "papermill requires it on Python 3.12 only, and never imports it"}
# Imported by ntkbook inside functions the GPU run does not call
LAZY = {"pooch": "downloads CIFAR; the run sets NTKBOOK_DATA_DIR to the carried subset",
        "submitit": "ntkbook grid (clusters); not used by the build"}
# myst-nb is carried for myst_nb.glue alone: what glue imports, not its Sphinx stack
GLUE_NEEDS = {"ipython", "nbformat", "docutils"}
TARGET = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_wheels() -> dict[str, str]:
    """``{name: version}`` of the script's WHEELS array."""
    text = SCRIPT.read_text()
    block = text[text.index("\nWHEELS=(") + 9:]
    block = block[:block.index("\n)")]
    pins = [line.split("#")[0].strip() for line in block.splitlines()]
    pairs = [pin.split("==") for pin in pins if pin]
    return {canonical(name): version for name, version in pairs}


def requirements(dist: str) -> set[str]:
    """The distributions ``dist`` requires on the GPU machine (Python 3.12, Linux), without
    extras."""
    from packaging.requirements import Requirement
    out = set()
    for line in importlib.metadata.requires(dist) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({**TARGET, "extra": ""}):
            out.add(canonical(requirement.name))
    return out


def closure(roots) -> set[str]:
    seen, todo = set(), [canonical(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            todo += requirements(name) - seen
        except importlib.metadata.PackageNotFoundError:
            pass
    return seen


def run_script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


# --- the script -----------------------------------------------------------------------

def test_script_parses_and_explains_itself():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    usage = run_script("--help")
    assert usage.returncode == 0
    for mode in ("--prepare", "--dry-run", "--fresh", "carry"):
        assert mode in usage.stdout
    wrong = run_script("--bogus")
    assert wrong.returncode == 2 and "unknown argument --bogus" in wrong.stderr


def test_wheels_are_pinned_to_the_project_environment():
    """Each carried wheel is a distribution of the project's environment, pinned to its
    version there; a newer release installed since is reported (re-pin), not failed."""
    pins = pinned_wheels()
    assert len(pins) > 30
    differ = {name: (version, importlib.metadata.version(name)) for name, version in pins.items()
              if importlib.metadata.version(name) != version}
    if differ:
        warnings.warn(f"benchmarks/gpu.sh pins other versions than this environment has "
                      f"(pinned, installed): {differ}; re-pin them and run --prepare")


def test_wheels_carry_everything_they_require():
    """Every requirement of a carried wheel is carried or comes with JAX, flax, optax and
    matplotlib (myst-nb: only what its glue() imports); read from the installed metadata of
    the wheels installed here at the pinned version."""
    pins, base = pinned_wheels(), closure(BASE)
    assert not set(pins) & {"jax", "jaxlib", "flax", "optax", "matplotlib", "numpy", "scipy"}
    same = [name for name, version in pins.items()
            if importlib.metadata.version(name) == version and name != "myst-nb"]
    assert len(same) > len(pins) // 2, "most pins differ from this environment: re-pin"
    pins = set(pins)
    for name in same:
        missing = requirements(name) - pins - base - set(NOT_CARRIED)
        assert not missing, f"{name} requires {sorted(missing)}, neither carried nor in the base"
    assert GLUE_NEEDS <= pins
    for name in NOT_CARRIED:
        assert name not in pins


def imported_roots(path: Path) -> tuple[set[str], set[str]]:
    """(top-level modules imported at module level, those imported inside functions)."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        source = "\n".join(line for line in source.splitlines()
                           if not line.lstrip().startswith(("%", "!")))
    else:
        source = path.read_text()
    eager, lazy = set(), set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", "") == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            else:
                names = []
            (lazy if in_function else eager).update(n.split(".")[0] for n in names)
            visit(child, in_function or isinstance(child, (ast.FunctionDef,
                                                           ast.AsyncFunctionDef)))

    visit(ast.parse(source), False)
    return eager, lazy - eager


def test_wheels_cover_what_the_run_imports():
    """Third-party modules imported by ntkbook, the pages and the benchmarks are carried or
    come with the base; those imported only inside functions the run never calls are listed
    in LAZY."""
    pins, base = set(pinned_wheels()), closure(BASE)
    distributions = importlib.metadata.packages_distributions()
    local = {"ntkbook", "throughput", "tests"}
    files = (sorted((ROOT / "ntkbook").glob("*.py")) + sorted((ROOT / "book").glob("*.ipynb"))
             + sorted((ROOT / "benchmarks").glob("*.py")))
    assert len(files) > 40
    for path in files:
        eager, lazy = imported_roots(path)
        for module, allowed in ((eager, set()), (lazy, set(LAZY))):
            for root in module - set(sys.stdlib_module_names) - local:
                dists = {canonical(d) for d in distributions.get(root, [root])}
                assert dists & (pins | base | allowed), \
                    f"{path.relative_to(ROOT)} imports {root} ({sorted(dists)}): not carried"


# --- the data it carries ------------------------------------------------------------------

def test_data_subset_holds_the_profiles_images(tmp_path):
    """--prepare's copy of CIFAR: a prefix of the official files that the loader reads and
    draws the profile's balanced subsets from."""
    source = Path(os.environ.get("NTKBOOK_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not (source / "cifar-10-batches-bin").is_dir():
        pytest.skip("no CIFAR-10 sample here")
    done = run_script("--data", env={"NTKBOOK_DATA_DIR": str(source),
                                     "NTKBOOK_GPU_DATA": str(tmp_path),
                                     "NTKBOOK_GPU_PROFILE": "smoke"})
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "cifar-10-batches-bin"
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert sizes["batches.meta.txt"] > 0
    assert sizes["data_batch_1.bin"] < 1500 * 3073 and sizes["test_batch.bin"] < 400 * 3073
    assert len((folder / "test_batch_indices.txt").read_text().split()) == \
        sizes["test_batch.bin"] // 3073
    script = ("from ntkbook import data; "
              "print(len(data.balanced_subset('cifar10', 'train', 1000)), "
              "len(data.balanced_subset('cifar10', 'test', 200)))")
    loaded = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT,
                            capture_output=True, text=True,
                            env={**os.environ, "NTKBOOK_DATA_DIR": str(tmp_path)})
    assert loaded.stdout.split() == ["1000", "200"], loaded.stderr


def test_what_travels_fits_64_mib():
    """The tree, the wheels (about 16 MiB) and the gpu profile's CIFAR subset (about 1.1 x
    its images) under the device's 64 MiB; the prepared folders themselves where present."""
    from ntkbook import config
    cfg = config.load_profile("gpu")
    listed = subprocess.run("git ls-files -z; git ls-files -z --others --exclude-standard",
                            check=False, shell=True, cwd=ROOT, capture_output=True).stdout
    tree = sum((ROOT / name).stat().st_size for name in set(listed.decode().split("\0"))
               if name and (ROOT / name).is_file())
    data = 1.15 * (cfg.n_train + cfg.n_test) * 3073
    assert tree + 17 * MIB + data < 60 * MIB
    prepared = [ROOT / ".whl", ROOT / ".data"]
    if all(p.is_dir() for p in prepared):
        carried = sum(f.stat().st_size for p in prepared for f in p.rglob("*") if f.is_file())
        assert tree + carried < 64 * MIB


# --- the archive ----------------------------------------------------------------------

def fake_run(work: Path, extra: bytes = b"") -> None:
    """What a finished run leaves in work/: executed and published pages (the published cpu
    run's notebooks, figures and all), build.json, run.json and logs."""
    published = sorted((ROOT / "results" / "cpu").glob("*.ipynb"))
    assert published
    for folder in (work / "book" / "source" / "book", work / "results" / "gpu", work / "logs"):
        folder.mkdir(parents=True)
    for path in published:
        for folder in (work / "book" / "source" / "book", work / "results" / "gpu"):
            (folder / path.name).write_bytes(path.read_bytes())
    (work / "book" / "build.json").write_text("{}")
    (work / "results" / "gpu" / "run.json").write_text("{}")
    (work / "logs" / "gpu.log").write_text("step book: ok in 1.0 s\n")
    if extra:
        (work / "book" / "source" / "book" / "huge.ipynb").write_bytes(extra)


def tar_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def archive(work: Path, out: Path) -> subprocess.CompletedProcess:
    return run_script("--archive", env={"NTKBOOK_GPU_WORK": str(work), "OUT": str(out),
                                        "NTKBOOK_GPU_PROFILE": "gpu"})


def test_archive_holds_the_run_within_16_mib(tmp_path):
    fake_run(tmp_path / "work")
    done = archive(tmp_path / "work", tmp_path / "out")
    assert done.returncode == 0, done.stdout + done.stderr
    tarball = tmp_path / "out" / "gpu-run.tar.gz"
    assert tarball.stat().st_size < 16 * MIB
    names = tar_names(tarball)
    assert "book/build.json" in names and "results/gpu/run.json" in names
    assert "results/gpu/protocol.ipynb" in names and "book/source/book/protocol.ipynb" in names
    assert (tmp_path / "out" / "gpu.log").is_file()


def test_archive_over_16_mib_drops_the_raw_copies_then_fails_clearly(tmp_path):
    noise = os.urandom(17 * MIB)  # incompressible
    fake_run(tmp_path / "work", extra=noise)
    done = archive(tmp_path / "work", tmp_path / "out")
    assert done.returncode == 0, done.stdout + done.stderr
    names = tar_names(tmp_path / "out" / "gpu-run.tar.gz")
    assert "results/gpu/run.json" in names and not any(n.startswith("book/source") for n in names)
    (tmp_path / "work" / "results" / "gpu" / "huge.ipynb").write_bytes(noise)
    done = archive(tmp_path / "work", tmp_path / "out2")
    assert done.returncode != 0
    assert "over 16 MiB even so" in done.stdout
    assert not (tmp_path / "out2" / "gpu-run.tar.gz").exists()


# --- the gpu profile's time on one H100 -------------------------------------------------
#
# Work in image forwards from ntkbook.costs (the book's own plan), at a conservative rate,
# plus XLA compilation per program, the start of every page's kernel and the script's other
# steps; no credit for images that earlier attacks of the worst case already broke.

H100_FLOPS = 10e12  # useful FLOP/s for width-16 ResNet-18 convolutions at batch 100-500:
#                     a seventh of the H100's fp32 peak (67 TFLOP/s), a fiftieth of TF32's
# XLA programs of a cold book, counted in the persistent cache of the smoke rehearsal (100):
# 58 of the model (train steps, attacks, predictions, kernels, eigen-images), 42 single jnp
# operations; the model's counted with a margin, at the top of 1-2 s each on 16 cores
MODEL_PROGRAMS, MODEL_COMPILE_SECONDS = 70, 2.0
SMALL_PROGRAMS, SMALL_COMPILE_SECONDS = 50, 0.25
JACOBIAN_PROGRAMS = 3  # kernel Jacobians through standard, centered and centered_standard,
CHUNK_COMPILE_SECONDS = 1.5  # per 16-image chunk, unrolled into one program
PAGE_START_SECONDS = 8.0  # a page's kernel, imports and CUDA start (no credit for 2 at once)
STEPS_SECONDS = {"install": 10.0, "machine": 10.0, "publish": 15.0}
TARGET_SECONDS = 465  # gpu.sh runs the benchmarks after the book until then, at least 60 s
BENCHMARKS_MIN_SECONDS, ARCHIVE_SECONDS = 60, 5.0
LIMIT_SECONDS = 8 * 60


def h100_seconds(cfg) -> dict[str, float]:
    """Estimated wall seconds of benchmarks/gpu.sh on one H100, by part: the book's steps,
    then the benchmarks (until the script's target, at least a minute) and the archive."""
    from ntkbook import book, settings
    from ntkbook.costs import forward_flops, forward_units
    units = forward_units(cfg)
    seconds = {f"compute: {k}": v * forward_flops(cfg) / H100_FLOPS for k, v in units.items()}
    chunks = -(-cfg.n_kernel // 16)
    seconds["compile"] = (MODEL_PROGRAMS * MODEL_COMPILE_SECONDS
                          + SMALL_PROGRAMS * SMALL_COMPILE_SECONDS
                          + JACOBIAN_PROGRAMS * chunks * CHUNK_COMPILE_SECONDS)
    seconds["page starts"] = len(settings.pages(cfg, book.notebooks())) * PAGE_START_SECONDS
    seconds.update(STEPS_SECONDS)
    seconds["benchmarks"] = max(BENCHMARKS_MIN_SECONDS, TARGET_SECONDS - sum(seconds.values()))
    seconds["archive"] = ARCHIVE_SECONDS
    return seconds


def estimate_text(cfg) -> str:
    from ntkbook.costs import forward_flops, forward_units
    seconds = h100_seconds(cfg)
    units = forward_units(cfg)
    lines = [(f"{cfg.profile}: F = {forward_flops(cfg) / 1e6:.1f} MFLOP per image forward, "
              f"{sum(units.values()) / 1e6:.1f} M image forwards = "
              f"{sum(units.values()) * forward_flops(cfg) / 1e12:.0f} TFLOP at "
              f"{H100_FLOPS / 1e12:.0f} TFLOP/s")]
    lines += [f"  {name}: {value:.0f} s" + (f" ({units[name[9:]] / 1e6:.2f} M F)"
                                            if name.startswith("compute: ") else "")
              for name, value in seconds.items()]
    book_part = sum(v for k, v in seconds.items() if k not in ("benchmarks", "archive"))
    lines.append(f"  install, book and publish: {book_part:.0f} s; total: "
                 f"{sum(seconds.values()):.0f} s")
    return "\n".join(lines)


def test_gpu_profile_keeps_every_page_and_mode():
    from ntkbook import config, robustness
    cfg = config.load_profile("gpu")
    assert (cfg.model, cfg.width) == ("resnet18", 16)
    assert set(cfg.modes) == set(config.MODES) and len(cfg.seeds) >= 2
    assert robustness.audit_applies(cfg)


def test_gpu_profile_runs_in_under_8_minutes_on_one_h100():
    """The estimate is under 8 minutes with at least a minute of benchmarks, and
    parameters/gpu.yaml quotes it (and gpu.sh's target is the one estimated)."""
    from ntkbook import config
    cfg = config.load_profile("gpu")
    seconds = h100_seconds(cfg)
    assert sum(seconds.values()) < LIMIT_SECONDS, estimate_text(cfg)
    assert seconds["benchmarks"] >= BENCHMARKS_MIN_SECONDS
    assert f"NTKBOOK_GPU_TARGET:-{TARGET_SECONDS}}}" in SCRIPT.read_text()
    book_part = sum(v for k, v in seconds.items() if k not in ("benchmarks", "archive"))
    quoted = re.search(r"install, book and publish:? (\d+) s",
                       config.profile_path("gpu").read_text())
    assert quoted, "parameters/gpu.yaml should quote 'install, book and publish: N s'"
    assert abs(int(quoted.group(1)) - book_part) <= 5, estimate_text(cfg)


if __name__ == "__main__":
    from ntkbook import config
    print(estimate_text(config.load_profile(sys.argv[1] if len(sys.argv) > 1 else "gpu")))
