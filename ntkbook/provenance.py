"""What produced a build: the profile file, the code, the machine, the versions, the wall time.

:func:`record` is written by every ``ntkbook build`` (``build.json``) and becomes a published
run's ``run.json``; :func:`stale_notebooks` says which notebooks changed since.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from ntkbook import config

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jax", "jaxlib", "flax", "optax")


def profile_sha256(profile: str) -> str:
    """SHA-256 of the profile file's bytes."""
    return hashlib.sha256(config.profile_path(profile).read_bytes()).hexdigest()


def machine() -> dict[str, Any]:
    """CPU model, cores and GPUs of this machine (GPUs from nvidia-smi, so that recording
    them does not start JAX on a device)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpus = []
    if shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                capture_output=True, text=True)
        gpus = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "gpus": gpus}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def code_version() -> str:
    """The git commit of the code, with ``+changes`` when the work tree differs from it."""
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "ntkbook", "book",
                "parameters")
    return commit + ("+changes" if dirty else "")


def record(cfg: config.Profile, profile: str, began: float, wall_seconds: dict[str, float],
           sources: dict[str, str], *, complete: bool) -> dict[str, Any]:
    """The facts of one build (``build.json``)."""
    return {"profile": cfg.profile, "label": cfg.label, "profile_sha256": profile_sha256(profile),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(began)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "complete": complete, "code": code_version(), "machine": machine(),
            "versions": versions(), "wall_seconds": wall_seconds,
            "total_wall_seconds": round(time.time() - began, 1), "sources": sources}


def stale_notebooks(run: dict[str, Any]) -> list[str]:
    """Notebooks of ``book/`` whose source differs from the one the run executed."""
    stale = []
    for name, digest in run.get("sources", {}).items():
        path = ROOT / "book" / f"{name}.ipynb"
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            stale.append(name)
    return stale


def describe(run: dict[str, Any]) -> str:
    """One line for the intro page: which profile, machine and date produced the run."""
    gpus = ", ".join(run["machine"]["gpus"]) or "no GPU"
    minutes = run["total_wall_seconds"] / 60
    return (f"the published run of profile `{run['profile']}`, finished {run['finished'][:10]} "
            f"on {run['machine']['cpu']} ({run['machine']['cores']} cores, {gpus}) in "
            f"{minutes:.0f} minutes")
