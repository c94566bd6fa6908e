"""The empirical NTK, exact, by Jacobian contraction, and the statistics of section 3.

``K[c, c'](x, x') = J_c(x) . J_c'(x')`` with ``J`` the Jacobian of the logits with respect to
every parameter. A per-image Jacobian is a ``vmap`` over images of ``jacrev`` of one image's
logits (C backward passes per image, not the N*C a ``jacrev`` of the batch would take),
flattened to (images, logits, P); the kernel is then one contraction. How the work is laid
out follows a memory budget (:func:`plan_kernel`):

- ``"all"``: every image's Jacobian fits: each is computed exactly once, then one Gram
  contraction (``J J^T``);
- ``"per_logit"``: only one logit's Jacobians of all images fit (kernels of the diagonal
  class blocks: trace, per-class, one logit): for each logit, every image's gradient once and
  its Gram, accumulated; each (image, logit) gradient is computed once, the forward pass once
  per logit (at most about twice the work of ``"all"``);
- ``"blocked"``: not even that: blocks of images (of one logit's Jacobians, for the diagonal
  kinds), two at a time in memory; a row block is computed once and each later column block
  once more per earlier row block.

Jacobian contraction rather than NTK-vector products: measured on a 2-core CPU for CNNs,
contraction was 10-25x faster, since each Jacobian is computed once and reused.
BatchNorm must be in eval mode (images independent), as for every kernel of the paper.

Statistics (paper, section 3): kernel distance and velocity, effective rank, the kernel
specialisation matrix and its mean.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from ntkbook.compilation import jit
from ntkbook.models import ApplyFn, Params

KernelKind = Union[str, tuple[str, int]]
MAX_CHUNK = 16  # images per vmapped Jacobian call (bounds the backward pass's working memory)
UNROLL_CHUNKS = 64  # up to this many chunks are unrolled: 4x faster on XLA:CPU than lax.map


def _check_kind(kind: KernelKind, num_classes: int) -> None:
    if kind in ("trace", "per_class", "full"):
        return
    if (isinstance(kind, tuple) and len(kind) == 2 and kind[0] == "logit"
            and isinstance(kind[1], int) and 0 <= kind[1] < num_classes):
        return
    raise ValueError(f"kernel kind must be 'trace', 'per_class', 'full' or ('logit', c) with "
                     f"0 <= c < {num_classes}; got {kind!r}")


def memory_budget() -> int:
    """Bytes the kernel's Jacobians may take: ``$NTKBOOK_KERNEL_MEMORY_MB`` if set, else half
    of the device's free memory (the host's available memory on a CPU)."""
    if os.environ.get("NTKBOOK_KERNEL_MEMORY_MB"):
        return int(float(os.environ["NTKBOOK_KERNEL_MEMORY_MB"]) * 2**20)
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return (stats["bytes_limit"] - stats.get("bytes_in_use", 0)) // 2
    return _host_available_bytes() // 2


def _host_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class KernelPlan:
    """How :func:`empirical_ntk` lays out its work, and how many image Jacobians (all logits)
    it computes: ``jacobians / images`` is the recomputation factor (1 is ideal)."""

    strategy: str  # "all", "per_logit" or "blocked"
    block: int  # images per block ("blocked") or per vmapped chunk
    images: int
    jacobians: float


def plan_kernel(n1: int, n2: int | None, num_logits: int, num_params: int, itemsize: int,
                diagonal_only: bool, memory_bytes: int) -> KernelPlan:
    """The layout for kernels between ``n1`` and ``n2`` images (``None``: symmetric) over
    ``num_logits`` logits; ``diagonal_only``: only K_cc blocks are needed."""
    images = n1 + (n2 or 0)
    per_logit = num_params * itemsize  # one image's gradient of one logit, bytes
    per_image = num_logits * per_logit  # one image's Jacobian
    chunk = max(1, min(MAX_CHUNK, images))
    if images * per_image <= memory_bytes:
        return KernelPlan("all", chunk, images, float(images))
    if diagonal_only and num_logits > 1 and images * per_logit <= memory_bytes:
        return KernelPlan("per_logit", chunk, images, float(images))
    block = max(1, memory_bytes // (2 * (per_logit if diagonal_only else per_image)))
    if n2 is None:
        rows = math.ceil(n1 / block)
        # each row block once, and each column block once more per earlier row block
        jacobians = n1 + sum(min(block, n1 - j * block) * j for j in range(rows))
    else:
        jacobians = n1 + math.ceil(n1 / block) * n2
    return KernelPlan("blocked", block, images, float(jacobians))


def _logits_of(kind: KernelKind, num_classes: int) -> tuple[int, ...]:
    if isinstance(kind, tuple):
        return (kind[1],)
    return tuple(range(num_classes))


ContextFn = Callable[[Params, jax.Array, Any], jax.Array]  # (params, x, context) -> logits


@functools.lru_cache(maxsize=32)
def _jacobian_fn(fn: ContextFn, logits: tuple[int, ...], chunk: int) -> Callable:
    """Jitted ``(params, x (n * chunk, ...), context) -> (n * chunk, len(logits), P)``:
    per-image Jacobians of the chosen logits, ``chunk`` images at a time, leaves flattened."""
    selected = jnp.asarray(logits)

    def chunk_jacobian(params: Params, x: jax.Array, context: Any) -> jax.Array:
        def one_image(p: Params, image: jax.Array) -> jax.Array:
            return fn(p, image[None], context)[0][selected]

        jac = jax.vmap(jax.jacrev(one_image), in_axes=(None, 0))(params, x)
        return jnp.concatenate([leaf.reshape(x.shape[0], len(logits), -1)
                                for leaf in jax.tree_util.tree_leaves(jac)], axis=-1)

    @jit
    def jacobian(params: Params, x: jax.Array, context: Any) -> jax.Array:
        chunks = x.reshape(-1, chunk, *x.shape[1:])
        if len(chunks) <= UNROLL_CHUNKS:
            return jnp.concatenate([chunk_jacobian(params, chunks[i], context)
                                    for i in range(len(chunks))])
        out = jax.lax.map(lambda c: chunk_jacobian(params, c, context), chunks)
        return out.reshape(-1, *out.shape[2:])

    return jacobian


def _jacobians(fn: ContextFn, params: Params, context: Any, x: np.ndarray,
               logits: tuple[int, ...], max_chunk: int) -> jax.Array:
    """(N, len(logits), P) Jacobians of ``x``, each image's computed once (padding to whole
    chunks costs at most one image per chunk)."""
    count = math.ceil(len(x) / max_chunk)
    chunk = math.ceil(len(x) / count)
    padded = np.concatenate([x, np.zeros((count * chunk - len(x),) + x.shape[1:], x.dtype)])
    return _jacobian_fn(fn, logits, chunk)(params, padded, context)[:len(x)]


_CONTRACTIONS = {"trace": "icp,jcp->ij", "per_class": "icp,jcp->cij", "full": "icp,jdp->cdij",
                 "logit": "icp,jcp->ij"}


@jit(static_argnames=("pattern", "scale"))
def _contract(j1: jax.Array, j2: jax.Array, pattern: str, scale: float) -> jax.Array:
    return jnp.einsum(pattern, j1, j2) * scale if scale != 1.0 else jnp.einsum(pattern, j1, j2)


def _kernel_from(j1: jax.Array, j2: jax.Array, kind: KernelKind, num_classes: int) -> jax.Array:
    name = kind[0] if isinstance(kind, tuple) else kind
    scale = 1.0 / num_classes if name == "trace" else 1.0
    return _contract(j1, j2, _CONTRACTIONS[name], scale)


def empirical_ntk(apply_fn: ApplyFn | ContextFn, params: Params, x1: np.ndarray,
                  x2: np.ndarray | None = None, *, kind: KernelKind = "trace",
                  memory_bytes: int | None = None, context: Any = None) -> np.ndarray:
    """The empirical NTK of ``apply_fn(params, x) -> (N, C)`` between ``x1`` and ``x2``.

    ``kind``: ``'trace'`` (1/C) sum_c K_cc, shape (N1, N2); ``'per_class'`` the K_cc,
    (C, N1, N2); ``('logit', c)`` the kernel of logit c, (N1, N2); ``'full'`` (C, C, N1, N2).
    ``x2=None`` means ``x2 = x1``. ``memory_bytes`` (default :func:`memory_budget`) chooses
    the layout (:func:`plan_kernel`). With ``context`` (arrays the function needs besides
    ``params``: BatchNorm statistics, a parent's parameters), ``apply_fn(params, x, context)``
    receives them as arguments, so one compiled program serves every checkpoint.
    """
    x1 = np.asarray(x1)
    x2 = None if x2 is None else np.asarray(x2)
    fn = apply_fn if context is not None else _without_context(apply_fn)
    num_classes = jax.eval_shape(fn, params, x1[:1], context).shape[-1]
    _check_kind(kind, num_classes)
    leaves = jax.tree_util.tree_leaves(params)
    logits = _logits_of(kind, num_classes)
    plan = plan_kernel(len(x1), None if x2 is None else len(x2), len(logits),
                       sum(leaf.size for leaf in leaves), leaves[0].dtype.itemsize,
                       kind != "full", memory_budget() if memory_bytes is None else memory_bytes)
    work = (fn, params, context)
    if plan.strategy == "all":
        return np.asarray(_gram(work, x1, x2, kind, logits, num_classes, plan.block))
    if kind == "full":
        return _blocked(work, x1, x2, kind, logits, num_classes, plan.block)
    if plan.strategy == "per_logit":
        per_logit = [np.asarray(_gram(work, x1, x2, ("logit", c), (c,), num_classes, plan.block))
                     for c in logits]
    else:
        per_logit = [_blocked(work, x1, x2, ("logit", c), (c,), num_classes, plan.block)
                     for c in logits]
    stacked = np.stack(per_logit)
    if isinstance(kind, tuple):
        return stacked[0]
    return stacked.mean(axis=0) if kind == "trace" else stacked


@functools.lru_cache(maxsize=8)
def _without_context(apply_fn: ApplyFn) -> ContextFn:
    return lambda params, x, _: apply_fn(params, x)


Work = tuple[ContextFn, Params, Any]  # the function, its parameters and its context


def _gram(work: Work, x1: np.ndarray, x2: np.ndarray | None, kind: KernelKind,
          logits: tuple[int, ...], num_classes: int, chunk: int) -> jax.Array:
    """Every image's Jacobian once, then one contraction."""
    if x2 is None:
        j = _jacobians(*work, x1, logits, chunk)
        return _kernel_from(j, j, kind, num_classes)
    both = _jacobians(*work, np.concatenate([x1, x2]), logits, chunk)
    return _kernel_from(both[:len(x1)], both[len(x1):], kind, num_classes)


def _blocked(work: Work, x1: np.ndarray, x2: np.ndarray | None, kind: KernelKind,
             logits: tuple[int, ...], num_classes: int, block: int) -> np.ndarray:
    """Blocks of ``block`` images, two in memory at a time; symmetric: upper triangle only."""
    symmetric = x2 is None
    x2 = x1 if symmetric else x2
    chunk = min(block, MAX_CHUNK)
    rows = []
    for i in range(0, len(x1), block):
        j1 = _jacobians(*work, x1[i:i + block], logits, chunk)
        row = []
        for j in range(0, len(x2), block):
            if symmetric and j < i:
                row.append(None)  # filled from the transposed block below
                continue
            j2 = j1 if (symmetric and i == j) else _jacobians(*work, x2[j:j + block], logits,
                                                               chunk)
            row.append(np.asarray(_kernel_from(j1, j2, kind, num_classes)))
        rows.append(row)
    if symmetric:
        for a in range(len(rows)):
            for b in range(a):
                rows[a][b] = np.swapaxes(rows[b][a], -1, -2)
                if kind == "full":
                    rows[a][b] = np.swapaxes(rows[a][b], 0, 1)
    return np.concatenate([np.concatenate(row, axis=-1) for row in rows], axis=-2)


def kernel_distance(k1: np.ndarray, k2: np.ndarray) -> float:
    """S(K1, K2) = 1 - Tr(K1^T K2) / (||K1||_F ||K2||_F); 0 iff K1 is a positive multiple of K2."""
    k1, k2 = np.asarray(k1, np.float64), np.asarray(k2, np.float64)
    cosine = np.sum(k1 * k2) / (np.linalg.norm(k1) * np.linalg.norm(k2))
    return float(max(0.0, 1.0 - cosine))  # >= 0 by Cauchy-Schwarz; no -1e-16 from rounding


def effective_rank(k: np.ndarray) -> float:
    """exp(-sum p_i log p_i), p_i = lambda_i / sum lambda: 1 for rank one, N for the identity."""
    eigenvalues = np.clip(np.linalg.eigvalsh(np.asarray(k, np.float64)), 0.0, None)
    p = eigenvalues / eigenvalues.sum()
    p = p[p > 0]
    return float(math.exp(-np.sum(p * np.log(p))))


def kernel_velocity(epochs: Sequence[float], trace_kernels: Sequence[np.ndarray]) -> np.ndarray:
    """dS/dt between neighbouring checkpoints: S(K_i, K_i+1) / (t_i+1 - t_i), one per gap.

    Fractional epochs are fine: the gap, not the index, is the denominator.
    """
    if len(epochs) != len(trace_kernels) or len(epochs) < 2:
        raise ValueError("need at least two checkpoints, one kernel each")
    gaps = np.diff(np.asarray(epochs, dtype=float))
    if np.any(gaps <= 0):
        raise ValueError(f"epochs must increase strictly, got {list(epochs)}")
    distances = [kernel_distance(a, b)
                 for a, b in zip(trace_kernels[:-1], trace_kernels[1:], strict=True)]
    return np.asarray(distances) / gaps


def label_alignment(kernel: np.ndarray, indicator: np.ndarray) -> float:
    """A(K, y y^T) = 1 - S(K, y y^T) = y^T K y / (||K||_F ||y||^2) for a 0/1 vector y."""
    k = np.asarray(kernel, np.float64)
    y = np.asarray(indicator, np.float64)
    return float(y @ k @ y / (np.linalg.norm(k) * (y @ y)))


def specialization_matrix(class_kernels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """KSM(c, c') = A(K^cc, y_c' y_c'^T) / (C^-1 sum_d A(K^dd, y_c' y_c'^T)), shape (C, C).

    ``class_kernels`` are the C per-class kernels K^cc (C, N, N) of images with ``labels``.
    Entries lie in [0, C] for PSD kernels; a high diagonal means specialised class kernels.
    """
    num_classes = class_kernels.shape[0]
    indicators = [np.asarray(labels) == c for c in range(num_classes)]
    alignment = np.array([[label_alignment(k, y) for y in indicators] for k in class_kernels])
    return alignment / alignment.mean(axis=0, keepdims=True)


def mean_specialization(class_kernels: np.ndarray, labels: np.ndarray) -> float:
    """C^-1 sum_c KSM(c, c): the mean diagonal of the specialisation matrix, in [0, C]."""
    return float(np.mean(np.diag(specialization_matrix(class_kernels, labels))))
