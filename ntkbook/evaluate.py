"""Batched clean and PGD accuracy of any forward (standard, linearized, centered, ...).

The jitted kernels take the forward as a static argument and the variables as data, so one
compilation serves every checkpoint of a model.
"""

from __future__ import annotations

import jax
import numpy as np

from ntkbook.attacks import pgd_linf
from ntkbook.compilation import jit
from ntkbook.progress import progress
from ntkbook.train import AttackSettings, Forward, Variables


@jit(static_argnames=("forward",))
def _predict(forward: Forward, variables: Variables, x: jax.Array) -> jax.Array:
    return forward(variables, x, False)[0].argmax(-1)


@jit(static_argnames=("forward", "steps"))
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
        for b, s in enumerate(progress(_batches(len(images), batch_size), desc=desc))])


def accuracy(correct: np.ndarray) -> float:
    """Accuracy (%) of a per-image correctness mask."""
    return 100.0 * float(np.mean(correct))


def evaluate_transfer(source_forward: Forward, source_variables: Variables,
                      target_forward: Forward, target_variables: Variables, images: np.ndarray,
                      labels: np.ndarray, attack: AttackSettings, *, batch_size: int,
                      seed: int = 0, source_masks: dict[str, np.ndarray] | None = None
                      ) -> np.ndarray:
    """Per image: is the target correct on the PGD example made against the source? Given a
    dict ``source_masks``, also fills it with the source's own :func:`evaluate` masks, made
    from the same examples."""
    x_adv = adversarial_examples(source_forward, source_variables, images, labels, attack,
                                 batch_size=batch_size, seed=seed)
    if source_masks is not None:
        source_masks.update(_own_masks(source_forward, source_variables, images, x_adv, labels,
                                       batch_size))
    return predict(target_forward, target_variables, x_adv, batch_size) == labels


def _own_masks(forward: Forward, variables: Variables, images: np.ndarray, x_adv: np.ndarray,
               labels: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    return {"clean": predict(forward, variables, images, batch_size) == labels,
            "robust": predict(forward, variables, x_adv, batch_size) == labels}


def evaluate(forward: Forward, variables: Variables, images: np.ndarray, labels: np.ndarray,
             attack: AttackSettings, *, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-image correctness ``{'clean': mask, 'robust': mask under PGD}`` (booleans), so
    that comparisons can be paired by image (:mod:`ntkbook.stats`)."""
    x_adv = adversarial_examples(forward, variables, images, labels, attack,
                                 batch_size=batch_size, seed=seed)
    return _own_masks(forward, variables, images, x_adv, labels, batch_size)


def tau(benign: float, transferred: float, own: float) -> float:
    """Transferability (paper, section 5): (Acc_b - Acc_transferred) / (Acc_b - Acc_own).

    1: the examples hurt the target as much as its own PGD examples; 0: not at all. NaN when
    the target's own examples do not lower its accuracy (tau undefined).
    """
    if benign == own:
        return float("nan")
    return (benign - transferred) / (benign - own)


@jit(static_argnames=("centered", "standard"))
def _squared_norms(centered: Forward, standard: Forward, variables: Variables,
                   x: jax.Array) -> tuple[jax.Array, jax.Array]:
    delta = centered(variables, x, False)[0]
    f0 = standard({**variables, "params": variables["params_t"]}, x, False)[0]
    return (delta ** 2).sum(-1), (f0 ** 2).sum(-1)


def first_order_ratio(centered: Forward, standard: Forward, variables: Variables,
                      images: np.ndarray, *, batch_size: int) -> float:
    """Mean over images of ||J(x)(theta - theta_t)||^2 / ||f(x; theta_t)||^2: the size of the
    first-order term of linearized dynamics relative to the zeroth (paper, Fig. 2c)."""
    parts = [_squared_norms(centered, standard, variables, images[s])
             for s in _batches(len(images), batch_size)]
    delta, f0 = (np.concatenate([np.asarray(p[i]) for p in parts]) for i in (0, 1))
    return float(np.mean(delta / f0))
