"""Pictures of NTK eigenvectors (paper, section 8), without materialising the Jacobian.

For the kernel ``K = J J^T`` of one logit on images ``X`` with top eigenvectors ``u_i``, the
parameter-space direction ``v_i = J^T u_i`` is the gradient of ``u_i . f(X)`` (one backward
pass). An image ``x`` is then pushed, from 0.5 grey, by signed-gradient steps on
``cos(v_i, phi(x))`` with ``phi(x) = grad_theta f(x)``, kept in [0, 1]: the image whose tangent
feature is most (maximise) or least (minimise) aligned with the eigenvector.

Functions take ``logit_fn(params, x, context) -> (N,)`` with the network's other arrays as
``context`` (see :func:`ntkbook.kernels.empirical_ntk`), so they compile once for every
checkpoint. Unlike ntkbook's other programs they are compiled with XLA's default options
(:mod:`ntkbook.compilation`): at -O1 the cosines' long dot products change in the last bit,
which signed-gradient steps can amplify into different pixels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkbook.models import Params

LogitFn = Callable[[Params, jax.Array, Any], jax.Array]  # (params, x, context) -> (N,)


@functools.lru_cache(maxsize=None)
def one_logit(logits_fn: Callable, logit: int) -> LogitFn:
    """``(params, x, context) -> logits_fn(params, x, context)[:, logit]``."""
    return lambda params, x, context: logits_fn(params, x, context)[:, logit]


def top_eigenvectors(kernel: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` largest eigenvalues (descending) and their unit eigenvectors (N, count)."""
    values, vectors = np.linalg.eigh(np.asarray(kernel, np.float64))
    order = np.argsort(values)[::-1][:count]
    return values[order], vectors[:, order]


@functools.partial(jax.jit, static_argnums=0)
def _directions(logit_fn: LogitFn, params: Params, context: Any, images: jax.Array,
                vectors: jax.Array) -> Params:
    def direction(u: jax.Array) -> Params:
        return jax.grad(lambda p: jnp.dot(u, logit_fn(p, images, context)))(params)

    return jax.lax.map(direction, vectors.T)


def parameter_directions(logit_fn: LogitFn, params: Params, context: Any, images: np.ndarray,
                         vectors: np.ndarray) -> Params:
    """``J^T u`` for each column ``u`` of ``vectors`` (N, k), stacked along a leading axis of
    every parameter leaf: the gradients of ``u . f(images)``."""
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    return _directions(logit_fn, params, context, jnp.asarray(images),
                       jnp.asarray(vectors, dtype=dtype))


def _cosine(a: Params, b: Params) -> jax.Array:
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    dot = sum(jnp.vdot(x, y) for x, y in zip(leaves_a, leaves_b, strict=True))
    norm_a = jnp.sqrt(sum(jnp.vdot(x, x) for x in leaves_a))
    norm_b = jnp.sqrt(sum(jnp.vdot(y, y) for y in leaves_b))
    return dot / (norm_a * norm_b)


def feature_cosine(logit_fn: LogitFn, params: Params, context: Any, direction: Params,
                   image: jax.Array) -> jax.Array:
    """cos(direction, grad_theta f(image)) for one image (32, 32, 3)."""
    feature = jax.grad(lambda p: logit_fn(p, image[None], context)[0])(params)
    return _cosine(direction, feature)


@functools.partial(jax.jit, static_argnums=(0, 4, 6))
def _optimise(logit_fn: LogitFn, params: Params, context: Any, directions: Params, steps: int,
              step_size: float, maximise: bool) -> tuple[jax.Array, jax.Array]:
    count = jax.tree_util.tree_leaves(directions)[0].shape[0]
    start = jnp.full((count, 32, 32, 3), 0.5, jnp.float32)
    sign = 1.0 if maximise else -1.0

    def cosine(d, x):
        return feature_cosine(logit_fn, params, context, d, x)

    gradient = jax.vmap(jax.grad(cosine, argnums=1))

    def step(_, x):
        return jnp.clip(x + sign * step_size * jnp.sign(gradient(directions, x)), 0.0, 1.0)

    images = jax.lax.fori_loop(0, steps, step, start)
    return images, jax.vmap(cosine)(directions, images)


def optimise_images(logit_fn: LogitFn, params: Params, context: Any, directions: Params, *,
                    steps: int, step_size: float,
                    maximise: bool) -> tuple[np.ndarray, np.ndarray]:
    """One image per direction (``directions`` stacked as from :func:`parameter_directions`),
    from 0.5 grey, after ``steps`` signed-gradient steps on the feature cosine (ascent if
    ``maximise``), clipped to [0, 1]. Returns (images, cosines); ``steps=0`` gives the grey
    images and their starting cosines."""
    images, cosines = _optimise(logit_fn, params, context, directions, steps, step_size,
                                maximise)
    return np.asarray(images), np.asarray(cosines)
