"""L-inf PGD with a uniform random start, against any ``logits_fn(x) -> (N, C)``.

The attack differentiates whatever function it is given (standard, linearized or centered
dynamics); callers pass BatchNorm in eval mode. Pixels stay in [0, 1] and within ``eps``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def project(x_adv: jax.Array, x: jax.Array, eps: float) -> jax.Array:
    """Nearest point of the eps-ball around ``x`` intersected with [0, 1]."""
    return jnp.clip(jnp.clip(x_adv, x - eps, x + eps), 0.0, 1.0)


def pgd_linf(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array, *,
             eps: float, steps: int, step_size: float, key: jax.Array,
             random_start: bool = True) -> jax.Array:
    """``steps`` signed-gradient ascent steps on the cross-entropy, projected each step."""
    if random_start:
        x_adv = project(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps), x, eps)
    else:
        x_adv = x
    loss_grad = jax.grad(lambda z: cross_entropy(logits_fn(z), y))

    def step(_: int, z: jax.Array) -> jax.Array:
        return project(z + step_size * jnp.sign(loss_grad(z)), x, eps)

    return jax.lax.fori_loop(0, steps, step, x_adv)
