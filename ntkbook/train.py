"""Training mechanics shared by stage 1 and stage 2: forward functions, SGD steps, epochs.

A *forward* is ``forward(variables, x, train) -> (logits, batch_stats)`` where ``variables``
holds ``params``, ``batch_stats`` and, for stage 2, the parent ``params_t``. It is built
once per (model, dynamics, BatchNorm mode) by :func:`forward_fn` so that jitted callers
compile once and take every checkpoint as an argument.

Adversarial batches come in two variants (profile key ``adversarial_step``):
``clean_then_adversarial`` is the authors' script (an SGD step on the clean batch, then
PGD against the updated weights and a second step on the adversarial batch);
``adversarial_only`` is Madry et al.'s single step on the adversarial batch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
import optax

from ntkbook import dynamics as dyn
from ntkbook.attacks import cross_entropy, pgd_linf
from ntkbook.models import eval_apply, train_apply

Variables = dict[str, Any]
Forward = Callable[[Variables, jax.Array, bool], tuple[jax.Array, Any]]


class TrainState(NamedTuple):
    variables: Variables
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """L-inf PGD as used inside training or evaluation."""

    eps: float
    steps: int
    step_size: float


@functools.lru_cache(maxsize=None)
def forward_fn(model: nn.Module, dynamics: str = "standard", update_bn: bool = False) -> Forward:
    """The forward of ``dynamics`` around ``variables['params_t']``.

    BatchNorm uses batch statistics and returns updated running statistics only when
    ``train`` is true and ``update_bn`` is set; otherwise the statistics are frozen.
    For linearized/centered dynamics the running statistics are those of the parent's
    forward pass (the primal of the jvp).
    """
    if dynamics not in dyn.DYNAMICS:
        raise ValueError(f"unknown dynamics {dynamics!r}; choose from {', '.join(dyn.DYNAMICS)}")

    def forward(variables: Variables, x: jax.Array, train: bool) -> tuple[jax.Array, Any]:
        params, stats = variables["params"], variables["batch_stats"]
        if not (train and update_bn):
            apply = dyn.make_dynamics(dynamics, eval_apply(model, stats),
                                      variables.get("params_t"))
            return apply(params, x), stats
        apply = train_apply(model, stats)
        if dynamics == "standard":
            return apply(params, x)
        if dynamics == "centered_standard":
            logits, new_stats = apply(params, x)
            return logits - jax.lax.stop_gradient(apply(variables["params_t"], x)[0]), new_stats
        f0, delta_f, new_stats = dyn.first_order_terms(apply, variables["params_t"], params, x,
                                                       has_aux=True)
        return (delta_f if dynamics == "centered" else f0 + delta_f), new_stats

    return forward


def sgd(lr: float, momentum: float) -> optax.GradientTransformation:
    """Plain SGD with heavy-ball momentum, no weight decay (the paper's optimiser)."""
    return optax.sgd(lr, momentum=momentum or None)


def init_state(variables: Variables, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(variables, tx.init(variables["params"]))


def make_train_step(forward: Forward, tx: optax.GradientTransformation, *,
                    attack: AttackSettings | None = None, clean_first: bool = False
                    ) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], TrainState]:
    """A jitted ``step(state, x, y, key) -> state``; adversarial when ``attack`` is given."""

    def sgd_step(state: TrainState, x: jax.Array, y: jax.Array) -> TrainState:
        def loss_fn(params):
            logits, stats = forward({**state.variables, "params": params}, x, True)
            return cross_entropy(logits, y), stats

        grads, stats = jax.grad(loss_fn, has_aux=True)(state.variables["params"])
        updates, opt_state = tx.update(grads, state.opt_state, state.variables["params"])
        params = optax.apply_updates(state.variables["params"], updates)
        return TrainState({**state.variables, "params": params, "batch_stats": stats},
                          opt_state)

    def step(state: TrainState, x: jax.Array, y: jax.Array, key: jax.Array) -> TrainState:
        if attack is None:
            return sgd_step(state, x, y)
        if clean_first:
            state = sgd_step(state, x, y)
        x_adv = pgd_linf(lambda z: forward(state.variables, z, False)[0], x, y, eps=attack.eps,
                         steps=attack.steps, step_size=attack.step_size, key=key)
        return sgd_step(state, x_adv, y)

    return jax.jit(step)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch; the last incomplete batch is dropped (static shapes)."""
    return n // batch_size


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
    """Index batches of one epoch, shuffled by (seed, epoch): resumable and reproducible."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for b in range(steps_per_epoch(n, batch_size)):
        yield order[b * batch_size:(b + 1) * batch_size]


def step_key(seed: int, step: int) -> jax.Array:
    """The PGD random-start key of global step ``step``."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), step)


def run_epoch(state: TrainState, step: Callable, images: np.ndarray, labels: np.ndarray, *,
              batch_size: int, seed: int, epoch: int,
              after_step: Callable[[int, TrainState], None] | None = None) -> TrainState:
    """One pass over the data; ``after_step(global_step, state)`` runs after each batch."""
    per_epoch = steps_per_epoch(len(labels), batch_size)
    for b, idx in enumerate(epoch_batches(len(labels), batch_size, seed, epoch)):
        global_step = epoch * per_epoch + b + 1
        state = step(state, images[idx], labels[idx], step_key(seed, global_step))
        if after_step is not None:
            after_step(global_step, state)
    return state
