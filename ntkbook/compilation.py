"""How ntkbook's XLA programs are compiled: a persistent cache, and a cheaper CPU back end.

Every notebook kernel and CLI job is a fresh process that would otherwise recompile the same
XLA programs (train steps, attacks, kernels); with the cache at ``<cache>/.xla`` a program is
compiled once per machine and loaded by every later process. ``NTKBOOK_XLA_CACHE_DIR`` puts it
elsewhere (one folder for several caches, or a node-local disk); ``NTKBOOK_XLA_CACHE=0`` turns it
off. Importing this module turns it on; every ntkbook module that compiles JAX programs imports
it (directly or through :mod:`ntkbook.models`), while ``import ntkbook`` alone (the command
line's help) does not import JAX.

On CPU, :func:`jit` compiles with XLA's LLVM back end at -O1 instead of -O2: the smoke book's
attack programs compile about 30 % faster, run as fast (their convolutions and matmuls are
library calls, not generated code) and give bit-identical results (tests/test_compilation.py,
benchmarks/RESULTS.md). Other back ends keep XLA's defaults.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

from ntkbook.store import default_root

FOLDER = ".xla"
CPU_OPTIONS = {"xla_backend_optimization_level": 1}


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


@functools.cache
def compiler_options() -> dict[str, Any]:
    """XLA options of ntkbook's programs on the default backend (:data:`CPU_OPTIONS` on CPU)."""
    return dict(CPU_OPTIONS) if jax.default_backend() == "cpu" else {}


def jit(fun: Callable | None = None, **jit_kwargs: Any) -> Callable:
    """``jax.jit(fun, **jit_kwargs)`` compiled with :func:`compiler_options`; usable as
    ``@jit`` or ``@jit(static_argnames=...)``. The backend is asked at the first call, so
    importing ntkbook does not initialise JAX's backends."""
    if fun is None:
        return functools.partial(jit, **jit_kwargs)

    @functools.cache
    def program() -> Callable:
        return jax.jit(fun, compiler_options=compiler_options() or None, **jit_kwargs)

    @functools.wraps(fun)
    def call(*args: Any, **kwargs: Any) -> Any:
        return program()(*args, **kwargs)

    return call


enable_persistent_cache(default_root())
