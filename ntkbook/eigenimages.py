"""Pictures of NTK eigenvectors (paper, section 8), without materialising the Jacobian.

For the kernel ``K = J J^T`` of one logit on images ``X`` with top eigenvectors ``u_i``, the
parameter-space direction ``v_i = J^T u_i`` is the gradient of ``u_i . f(X)`` (one backward
pass). An image ``x`` is then pushed, from 0.5 grey, by signed-gradient steps on
``cos(v_i, phi(x))`` with ``phi(x) = grad_theta f(x)``, kept in [0, 1]: the image whose tangent
feature is most (maximise) or least (minimise) aligned with the eigenvector.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntkbook.models import Params

LogitFn = Callable[[Params, jax.Array], jax.Array]  # (params, x (N, 32, 32, 3)) -> (N,)


def top_eigenvectors(kernel: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` largest eigenvalues (descending) and their unit eigenvectors (N, count)."""
    values, vectors = np.linalg.eigh(np.asarray(kernel, np.float64))
    order = np.argsort(values)[::-1][:count]
    return values[order], vectors[:, order]


def parameter_direction(logit_fn: LogitFn, params: Params, images: np.ndarray,
                        u: np.ndarray) -> Params:
    """``J^T u`` as a parameter tree: the gradient of ``u . f(images)``."""
    u = jnp.asarray(u, dtype=jax.tree_util.tree_leaves(params)[0].dtype)
    return jax.grad(lambda p: jnp.dot(u, logit_fn(p, images)))(params)


def _cosine(a: Params, b: Params) -> jax.Array:
    dot = sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                              jax.tree_util.tree_leaves(b), strict=True))
    norm = lambda tree: jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree_util.tree_leaves(tree)))  # noqa: E731
    return dot / (norm(a) * norm(b))


def feature_cosine(logit_fn: LogitFn, params: Params, direction: Params,
                   image: jax.Array) -> jax.Array:
    """cos(direction, grad_theta f(image)) for one image (32, 32, 3)."""
    feature = jax.grad(lambda p: logit_fn(p, image[None])[0])(params)
    return _cosine(direction, feature)


def optimise_images(logit_fn: LogitFn, params: Params, directions: list[Params], *,
                    steps: int, step_size: float, maximise: bool,
                    shape: tuple[int, ...] = (32, 32, 3)) -> tuple[np.ndarray, np.ndarray]:
    """One image per direction, from 0.5 grey, after ``steps`` signed-gradient steps on the
    feature cosine (ascent if ``maximise``), clipped to [0, 1]. Returns (images, cosines);
    ``steps=0`` gives the grey images and their starting cosines."""
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *directions)
    start = jnp.full((len(directions),) + shape, 0.5, jnp.float32)
    sign = 1.0 if maximise else -1.0
    cosine = jax.vmap(lambda d, x: feature_cosine(logit_fn, params, d, x))
    gradient = jax.vmap(jax.grad(lambda d, x: feature_cosine(logit_fn, params, d, x),
                                 argnums=1))

    @jax.jit
    def run(stacked: Params) -> tuple[jax.Array, jax.Array]:
        def step(_, x):
            return jnp.clip(x + sign * step_size * jnp.sign(gradient(stacked, x)), 0.0, 1.0)

        images = jax.lax.fori_loop(0, steps, step, start)
        return images, cosine(stacked, images)

    images, cosines = run(stacked)
    return np.asarray(images), np.asarray(cosines)

