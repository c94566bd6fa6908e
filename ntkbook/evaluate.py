"""Batched clean and PGD accuracy of any forward (standard, linearized, centered, ...).

The jitted kernels take the forward as a static argument and the variables as data, so one
compilation serves every checkpoint of a model.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from tqdm.auto import tqdm

from ntkbook.attacks import pgd_linf
from ntkbook.train import AttackSettings, Forward, Variables


@functools.partial(jax.jit, static_argnames=("forward",))
def _predict(forward: Forward, variables: Variables, x: jax.Array) -> jax.Array:
    return forward(variables, x, False)[0].argmax(-1)


@functools.partial(jax.jit, static_argnames=("forward", "steps"))
def _attack(forward: Forward, variables: Variables, x: jax.Array, y: jax.Array,
            key: jax.Array, eps: float, step_size: float, steps: int) -> jax.Array:
    return pgd_linf(lambda z: forward(variables, z, False)[0], x, y, eps=eps, steps=steps,
                    step_size=step_size, key=key)


def _batches(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def predict(forward: Forward, variables: Variables, images: np.ndarray,
            batch_size: int) -> np.ndarray:
    """Predicted classes, BatchNorm in eval mode."""
    return np.concatenate([np.asarray(_predict(forward, variables, images[s]))
                           for s in _batches(len(images), batch_size)])


def adversarial_examples(forward: Forward, variables: Variables, images: np.ndarray,
                         labels: np.ndarray, attack: AttackSettings, *, batch_size: int,
                         seed: int, desc: str = "PGD") -> np.ndarray:
    """PGD examples against ``forward``; batch ``b`` uses key ``fold_in(seed, b)``."""
    key = jax.random.PRNGKey(seed)
    return np.concatenate([
        np.asarray(_attack(forward, variables, images[s], labels[s],
                           jax.random.fold_in(key, b), attack.eps, attack.step_size,
                           attack.steps))
        for b, s in enumerate(tqdm(_batches(len(images), batch_size), desc=desc, leave=False))])


def evaluate(forward: Forward, variables: Variables, images: np.ndarray, labels: np.ndarray,
             attack: AttackSettings, *, batch_size: int, seed: int = 0) -> dict[str, float]:
    """``{'clean': accuracy, 'robust': accuracy under PGD}`` in percent."""
    clean = predict(forward, variables, images, batch_size) == labels
    x_adv = adversarial_examples(forward, variables, images, labels, attack,
                                 batch_size=batch_size, seed=seed)
    robust = predict(forward, variables, x_adv, batch_size) == labels
    return {"clean": 100.0 * float(clean.mean()), "robust": 100.0 * float(robust.mean())}
