"""A content-addressed cache of artifacts (checkpoints, stage-2 results, evaluations, kernels).

An entry is addressed by a *spec*: a JSON-able dict naming the artifact kind and exactly
the parameters it depends on. Entries are msgpack (never pickle), written atomically (a
temporary folder renamed into place) with a SHA-256 checked on every load: a corrupted
entry is reported, discarded and recomputed, never used. Root: ``$NTKBOOK_CACHE_DIR``,
default ``.cache/store`` in the repository (git-ignored).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flax import serialization

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / ".cache" / "store"
PAYLOAD = "payload.msgpack"
MANIFEST = "manifest.json"

Spec = dict[str, Any]
Payload = dict[str, Any]


def spec_key(spec: Spec) -> str:
    """The SHA-256 of the spec's canonical JSON: equal specs, equal keys."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Store:
    """Artifacts on disk under ``root/<kind>/<key>/``."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root or os.environ.get("NTKBOOK_CACHE_DIR") or DEFAULT_ROOT)

    def path(self, spec: Spec) -> Path:
        return self.root / spec["kind"] / spec_key(spec)

    def exists(self, spec: Spec) -> bool:
        """Whether a finished entry is present (its checksum is verified on load)."""
        return (self.path(spec) / MANIFEST).is_file()

    def save(self, spec: Spec, payload: Payload) -> None:
        """Write ``payload`` for ``spec`` atomically, replacing any previous entry."""
        data = serialization.msgpack_serialize(payload)
        manifest = {"spec": spec, "sha256": hashlib.sha256(data).hexdigest(),
                    "bytes": len(data), "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
        staging = self.root / ".tmp" / uuid.uuid4().hex
        staging.mkdir(parents=True)
        for name, content in ((PAYLOAD, data), (MANIFEST, json.dumps(manifest).encode())):
            with open(staging / name, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        final = self.path(spec)
        final.parent.mkdir(parents=True, exist_ok=True)
        self.delete(spec)
        os.replace(staging, final)

    def load(self, spec: Spec) -> Payload | None:
        """The payload, or None if absent; a corrupted entry is logged, deleted, None."""
        folder = self.path(spec)
        if not self.exists(spec):
            return None
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            data = (folder / PAYLOAD).read_bytes()
            if manifest["spec"] != spec:
                raise ValueError("manifest names another spec")
            if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
                raise ValueError("checksum mismatch")
            return serialization.msgpack_restore(data)
        except (OSError, ValueError, KeyError) as error:
            log.warning("corrupted cache entry %s (%s): discarded, will recompute",
                        folder, error)
            self.delete(spec)
            return None

    def delete(self, spec: Spec) -> None:
        shutil.rmtree(self.path(spec), ignore_errors=True)

    def get_or_compute(self, spec: Spec, compute: Callable[[], Payload]) -> Payload:
        """Load the entry for ``spec``, or compute, save and return it."""
        payload = self.load(spec)
        if payload is not None:
            return payload
        start = time.perf_counter()
        payload = compute()
        self.save(spec, payload)
        log.info("%s computed in %.1f s", spec["kind"], time.perf_counter() - start)
        return self.load(spec)
