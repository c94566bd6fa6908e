"""A content-addressed cache of artifacts (checkpoints, stage-2 results, evaluations, kernels).

An entry is addressed by a *spec*: a JSON-able dict naming the artifact kind and exactly
the parameters it depends on. Each entry is one file ``<root>/<kind>/<key>.entry``: a JSON
manifest line (the spec, the payload's SHA-256 and size) followed by a msgpack payload (never
pickle). Files are written to a private temporary name and renamed into place, so readers see
a whole entry or none, and two writers of the same entry (equal content, by construction)
cannot corrupt each other: the last rename wins. The checksum is verified on every load: a
corrupted entry is reported, discarded and recomputed, never used.

Many workers may share one store, also on a network file system (NFS, Lustre): renames are
atomic there too, and :meth:`Store.lock` serialises work on one training run across hosts
with lock files that a killed worker cannot leave behind for long.

Root: ``$NTKBOOK_CACHE_DIR``, default ``.cache/store`` in the repository (git-ignored).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flax import serialization

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / ".cache" / "store"
SUFFIX = ".entry"
TEMPORARY = ".tmp"
LOCKS = ".locks"
LOCK_HEARTBEAT_SECONDS = 10.0
LOCK_STALE_SECONDS = float(os.environ.get("NTKBOOK_LOCK_STALE_SECONDS", "120"))

Spec = dict[str, Any]
Payload = dict[str, Any]


class StoreError(RuntimeError):
    """The cache folder cannot be used."""


def spec_key(spec: Spec) -> str:
    """The SHA-256 of the spec's canonical JSON: equal specs, equal keys."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_root() -> Path:
    return Path(os.environ.get("NTKBOOK_CACHE_DIR") or DEFAULT_ROOT)


def read_entry(path: Path) -> tuple[Spec, bytes]:
    """The spec and verified payload bytes of an entry file; ValueError if it is corrupt."""
    raw = path.read_bytes()
    header, newline, data = raw.partition(b"\n")
    if not newline:
        raise ValueError("no manifest line")
    manifest = json.loads(header)
    if len(data) != manifest["bytes"] or hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ValueError("checksum mismatch")
    return manifest["spec"], data


class Store:
    """Artifacts on disk under ``root/<kind>/<key>.entry``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self._check_writable()

    def _check_writable(self) -> None:
        """Fail now, before any compute, if entries could not be written."""
        probe = self.root / TEMPORARY / f"probe-{uuid.uuid4().hex}"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise StoreError(
                f"the cache folder {self.root} is not writable ({error.strerror or error}); "
                f"set NTKBOOK_CACHE_DIR to a folder you can write to") from None

    def path(self, spec: Spec) -> Path:
        return self.root / spec["kind"] / f"{spec_key(spec)}{SUFFIX}"

    def exists(self, spec: Spec) -> bool:
        """Whether an entry is present (its checksum is verified on load)."""
        return self.path(spec).is_file()

    def save(self, spec: Spec, payload: Payload) -> None:
        """Write ``payload`` for ``spec`` atomically, replacing any previous entry."""
        data = serialization.msgpack_serialize(payload)
        manifest = {"spec": spec, "sha256": hashlib.sha256(data).hexdigest(),
                    "bytes": len(data), "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
        final = self.path(spec)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = self.root / TEMPORARY / f"{final.name}.{uuid.uuid4().hex}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(staging, "wb") as handle:
                handle.write(json.dumps(manifest).encode() + b"\n" + data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, final)
        finally:
            staging.unlink(missing_ok=True)

    def load(self, spec: Spec) -> Payload | None:
        """The payload, or None if absent; a corrupted entry is logged, deleted, None."""
        path = self.path(spec)
        try:
            stored_spec, data = read_entry(path)
            if stored_spec != spec:
                raise ValueError("manifest names another spec")
            return serialization.msgpack_restore(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("corrupted cache entry %s (%s): discarded, will recompute", path, error)
            self.delete(spec)
            return None

    def delete(self, spec: Spec) -> None:
        self.path(spec).unlink(missing_ok=True)

    def get_or_compute(self, spec: Spec, compute: Callable[[], Payload]) -> Payload:
        """Load the entry for ``spec``, or compute, save and return it. One worker computes
        an entry at a time (:meth:`lock`): pages executed at once that need the same
        evaluation wait for it instead of computing it twice."""
        payload = self.load(spec)
        if payload is not None:
            return payload
        with self.lock(spec, spec["kind"]):
            payload = self.load(spec)  # computed by another worker while this one waited
            if payload is not None:
                return payload
            start = time.perf_counter()
            self.save(spec, compute())
            log.info("%s computed in %.1f s", spec["kind"], time.perf_counter() - start)
        return self.load(spec)

    def entries(self) -> Iterator[Path]:
        """Every entry file of the store."""
        for kind in sorted(p for p in self.root.iterdir() if p.is_dir()
                           and not p.name.startswith(".")):
            yield from sorted(kind.glob(f"*{SUFFIX}"))

    @contextlib.contextmanager
    def lock(self, spec: Spec, label: str, *, poll_seconds: float = 1.0) -> Iterator[None]:
        """Hold the lock of ``spec`` (one training run, say) for the duration of the block.

        Another worker holding it makes this one wait until it is released. A lock is stale,
        and broken, when its owner on this host is gone, or when its heartbeat (the file's
        time, refreshed every few seconds while held) is older than
        ``$NTKBOOK_LOCK_STALE_SECONDS`` (default 120 s): a worker killed on another host.
        """
        path = self.root / LOCKS / f"{spec_key(spec)}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        waited = False
        while not _try_create(path):
            if _is_stale(path):
                log.warning("%s: breaking the stale lock %s", label, path)
                _break(path)
                continue
            if not waited:
                log.info("%s: another worker holds %s; waiting for it", label, path)
                waited = True
            time.sleep(poll_seconds)
        stop = threading.Event()
        heartbeat = threading.Thread(target=_beat, args=(path, stop), daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join()
            path.unlink(missing_ok=True)


def _try_create(path: Path) -> bool:
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    with os.fdopen(descriptor, "w") as handle:
        json.dump(owner, handle)
    return True


def _is_stale(path: Path) -> bool:
    try:
        owner = json.loads(path.read_text() or "{}")
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False  # released meanwhile: try again
    except (OSError, ValueError):
        owner, age = {}, time.time() - _mtime_or_now(path)
    if owner.get("host") == socket.gethostname() and "pid" in owner:
        return not _alive(int(owner["pid"]))
    return age > LOCK_STALE_SECONDS


def _mtime_or_now(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _break(path: Path) -> None:
    """Move a stale lock aside (only one of several waiters succeeds), then remove it."""
    aside = path.with_name(f"{path.name}.stale.{uuid.uuid4().hex}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, aside)
        aside.unlink(missing_ok=True)


def _beat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(LOCK_HEARTBEAT_SECONDS):
        with contextlib.suppress(OSError):
            os.utime(path)
