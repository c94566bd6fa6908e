"""JAX's persistent compilation cache, inside the ntkbook cache folder.

Every notebook kernel and CLI job is a fresh process that would otherwise recompile the same
XLA programs (train epochs, attacks, kernels); with the cache at ``<cache>/.xla`` a program is
compiled once per machine and loaded by every later process. ``NTKBOOK_XLA_CACHE_DIR`` puts it
elsewhere (one folder for several caches, or a node-local disk); ``NTKBOOK_XLA_CACHE=0`` turns it
off.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

FOLDER = ".xla"


def enable_persistent_cache(cache_root: Path) -> Path | None:
    """Point JAX's compilation cache at ``cache_root/.xla`` (or ``$NTKBOOK_XLA_CACHE_DIR``);
    every program, however quick to compile, is kept. Returns the folder, or None when
    disabled by ``NTKBOOK_XLA_CACHE=0``."""
    if os.environ.get("NTKBOOK_XLA_CACHE", "1").lower() in ("0", "off", "false", "no"):
        return None
    folder = Path(os.environ.get("NTKBOOK_XLA_CACHE_DIR") or Path(cache_root) / FOLDER)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder
