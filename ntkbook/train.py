"""Training mechanics shared by stage 1 and stage 2: forward functions, SGD steps, epochs.

A *forward* is ``forward(variables, x, train) -> (logits, batch_stats)`` where ``variables``
holds ``params``, ``batch_stats`` and, for stage 2, the parent ``params_t``. It is built
once per (model, dynamics, BatchNorm mode) by :func:`forward_fn`, and a train step once per
(forward, optimiser, attack) by :func:`make_train_step`, so every checkpoint and run reuses
the same compiled programs (which JAX's persistent cache also shares between processes).

The training images live on the device; each step gathers its batch there
(:func:`run_steps`).

Adversarial batches come in two variants (profile key ``adversarial_step``):
``clean_then_adversarial`` is the authors' script (an SGD step on the clean batch, then
PGD against the updated weights and a second step on the adversarial batch);
``adversarial_only`` is Madry et al.'s single step on the adversarial batch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkbook import dynamics as dyn
from ntkbook.attacks import cross_entropy, pgd_linf
from ntkbook.compilation import jit
from ntkbook.models import eval_apply, train_apply

Variables = dict[str, Any]
Forward = Callable[[Variables, jax.Array, bool], tuple[jax.Array, Any]]


class TrainState(NamedTuple):
    variables: Variables
    opt_state: Any


class StepResult(NamedTuple):
    """A step's new state, its (last) loss, and whether loss and parameters are finite."""

    state: TrainState
    loss: jax.Array
    finite: jax.Array


Step = Callable[[TrainState, jax.Array, jax.Array, jax.Array], StepResult]


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """L-inf PGD as used inside training or evaluation."""

    eps: float
    steps: int
    step_size: float


@dataclasses.dataclass(frozen=True)
class SGD:
    """Plain SGD with heavy-ball momentum, no weight decay (the paper's optimiser)."""

    lr: float
    momentum: float

    def transform(self) -> optax.GradientTransformation:
        return optax.sgd(self.lr, momentum=self.momentum or None)


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or parameter."""


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


def init_state(variables: Variables, optimiser: SGD) -> TrainState:
    return TrainState(variables, optimiser.transform().init(variables["params"]))


def _all_finite(tree: Any) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf))
                              for leaf in jax.tree_util.tree_leaves(tree)]))


@functools.lru_cache(maxsize=None)
def make_train_step(forward: Forward, optimiser: SGD, *, attack: AttackSettings | None = None,
                    clean_first: bool = False) -> Step:
    """``step(state, x, y, key) -> StepResult``; adversarial when ``attack`` is given.

    Pure (not jitted): :func:`run_steps` compiles it inside an epoch, :func:`jitted_step`
    alone.
    """
    tx = optimiser.transform()

    def sgd_step(state: TrainState, x: jax.Array, y: jax.Array) -> tuple[TrainState, jax.Array]:
        def loss_fn(params):
            logits, stats = forward({**state.variables, "params": params}, x, True)
            return cross_entropy(logits, y), stats

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.variables["params"])
        updates, opt_state = tx.update(grads, state.opt_state, state.variables["params"])
        params = optax.apply_updates(state.variables["params"], updates)
        return TrainState({**state.variables, "params": params, "batch_stats": stats},
                          opt_state), loss

    def step(state: TrainState, x: jax.Array, y: jax.Array, key: jax.Array) -> StepResult:
        finite = jnp.array(True)
        if attack is not None:
            if clean_first:
                state, loss = sgd_step(state, x, y)
                finite = jnp.isfinite(loss)
            x = pgd_linf(lambda z: forward(state.variables, z, False)[0], x, y, eps=attack.eps,
                         steps=attack.steps, step_size=attack.step_size, key=key)
        state, loss = sgd_step(state, x, y)
        finite = finite & jnp.isfinite(loss) & _all_finite(state.variables["params"])
        return StepResult(state, loss, finite)

    return step


@functools.lru_cache(maxsize=None)
def jitted_step(step: Step) -> Step:
    """One compiled training step on given inputs (benchmarks and tests)."""
    return jit(step)


@functools.lru_cache(maxsize=None)
def _step_on_device_data(step: Step) -> Callable:
    """The compiled ``(state, images, labels, indices, key) -> StepResult``: the batch is
    gathered on the device from the resident training set."""
    def run(state: TrainState, images: jax.Array, labels: jax.Array, indices: jax.Array,
            key: jax.Array) -> StepResult:
        return step(state, images[indices], labels[indices], key)

    return jit(run)


def run_steps(state: TrainState, step: Step, images: jax.Array, labels: jax.Array,
              batches: np.ndarray, global_steps: np.ndarray,
              seed: int) -> tuple[TrainState, np.ndarray, np.ndarray]:
    """Run ``step`` over ``batches`` (S, B) of indices into the device-resident ``images``;
    step ``i`` draws its PGD key from ``global_steps[i]`` (:func:`step_key`). Returns the state
    and the per-step losses and finiteness flags (read back once, at the end).

    One compiled call per step, not a ``lax.scan`` over the epoch: on XLA:CPU a scan made
    epochs 10-20x slower (convolutions inside a loop body lose their fast path) and changed
    the floating-point order (benchmarks/RESULTS.md).
    """
    program = _step_on_device_data(step)
    losses, finite = [], []
    for indices, global_step in zip(batches, global_steps, strict=True):
        result = program(state, images, labels, jnp.asarray(indices, jnp.int32),
                         step_key(seed, int(global_step)))
        state = result.state
        losses.append(result.loss)
        finite.append(result.finite)
    return state, np.asarray(jnp.stack(losses)), np.asarray(jnp.stack(finite))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch; the last incomplete batch is dropped (static shapes)."""
    return n // batch_size


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The (steps, batch_size) index batches of one epoch, shuffled by (seed, epoch):
    resumable and reproducible."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    steps = steps_per_epoch(n, batch_size)
    return order[:steps * batch_size].reshape(steps, batch_size)


def step_key(seed: int, step: int) -> jax.Array:
    """The PGD random-start key of global step ``step``."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), step)
