"""Resumable, cached training runs.

A *run* is identified by a spec holding everything its weights depend on except how long
it trains. Its kept checkpoints (``{"kind": "checkpoint", "run": spec, "epoch": e}``)
hold the variables at epoch ``e`` (fractional epochs allowed); a single *progress* entry
holds the full training state (variables and optimiser) of the last finished epoch. A killed
run resumes from that entry; a longer run extends a shorter one. Training is a pure function
of the spec (batch order and PGD keys derive from seed, epoch and step), so a resumed run
ends with exactly the weights of an uninterrupted one.

One worker at a time trains a run (the store's lock): a second worker started on the same run
waits, then finds the result. An epoch whose loss or parameters become non-finite stops the
run with :class:`~ntkbook.train.DivergenceError` before anything of that epoch is cached.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable

import jax
import numpy as np
from flax import serialization

from ntkbook.progress import progress
from ntkbook.store import Spec, Store
from ntkbook.train import (
    DivergenceError,
    Step,
    TrainState,
    Variables,
    epoch_batches,
    run_steps,
    steps_per_epoch,
)

log = logging.getLogger(__name__)

FROZEN_KEYS = ("params_t",)  # constant inputs of a run, restored from its parent, not saved


@dataclasses.dataclass(frozen=True)
class Run:
    """The identity of a training run and the names of its artifacts."""

    spec: Spec
    label: str

    def checkpoint(self, epoch: float) -> Spec:
        return {"kind": "checkpoint", "run": self.spec, "epoch": float(epoch)}

    def progress(self, epoch: int) -> Spec:
        return {"kind": "progress", "run": self.spec, "epoch": int(epoch)}


def _saved_variables(variables: Variables) -> Variables:
    return jax.device_get({k: v for k, v in variables.items() if k not in FROZEN_KEYS})


def load_checkpoint(store: Store, run: Run, epoch: float, template: Variables) -> Variables:
    """The variables of ``run`` at ``epoch`` (``template`` supplies the frozen inputs)."""
    payload = store.load(run.checkpoint(epoch))
    if payload is None:
        raise FileNotFoundError(f"{run.label}: no checkpoint at epoch {epoch}")
    return {**template, **payload["variables"]}


def _restore(payload: dict, template: TrainState) -> TrainState:
    opt_state = serialization.from_state_dict(template.opt_state, payload["opt_state"])
    return TrainState({**template.variables, **payload["variables"]}, opt_state)


def _resume_point(store: Store, run: Run, epochs: int, keep: Iterable[float]) -> int:
    """The last epoch whose progress entry exists, or 0 when earlier checkpoints are missing."""
    latest = next((e for e in range(epochs, -1, -1) if store.exists(run.progress(e))), 0)
    missing = [e for e in keep if e < latest and not store.exists(run.checkpoint(e))]
    return 0 if missing else latest  # replay (deterministically) to rebuild lost checkpoints


def is_trained(store: Store, run: Run, epochs: int, keep: Iterable[float]) -> bool:
    """Whether every kept checkpoint and the final progress entry exist."""
    return (all(store.exists(run.checkpoint(e)) for e in keep)
            and store.exists(run.progress(epochs)))


@dataclasses.dataclass(frozen=True)
class Data:
    """Training images and labels, already on the device."""

    images: jax.Array
    labels: jax.Array

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def train_epoch(state: TrainState, step: Step, data: Data, *, batch_size: int, seed: int,
                epoch: int, cuts: Iterable[int] = (), label: str = "run"
                ) -> tuple[TrainState, dict[int, Variables]]:
    """One epoch; returns the final state and the variables after each step in ``cuts``
    (steps counted from 1 within the epoch). Raises :class:`DivergenceError` naming the first
    step whose loss or parameters are not finite."""
    batches = epoch_batches(len(data), batch_size, seed, epoch)
    per_epoch = len(batches)
    first = epoch * per_epoch + 1
    bounds = sorted({c for c in cuts if 0 < c < per_epoch} | {per_epoch})
    saved, start = {}, 0
    for end in bounds:
        state, losses, finite = run_steps(state, step, data.images, data.labels,
                                          batches[start:end],
                                          np.arange(first + start, first + end), seed)
        if not finite.all():
            bad = start + int(np.argmin(finite))
            raise DivergenceError(
                f"{label}: training diverged at epoch {epoch}, step {bad + 1} of {per_epoch} "
                f"(loss {losses[bad - start]:.4g}; a loss or parameter is NaN or infinite). "
                f"Nothing of epoch {epoch} was cached: lower the learning rate.")
        if end in cuts:
            saved[end] = _saved_variables(state.variables)
        start = end
    return state, saved


def train_run(store: Store, run: Run, *, init: Callable[[], TrainState],
              step_for_epoch: Callable[[int], Step], data: Data, epochs: int,
              batch_size: int, seed: int, keep: Iterable[float]) -> list[int]:
    """Train ``run`` to ``epochs``, saving the checkpoints in ``keep``; return epochs trained.

    Does nothing when every kept checkpoint already exists.
    """
    keep = sorted(float(e) for e in keep)
    if is_trained(store, run, epochs, keep):
        return []
    with store.lock(run.spec, run.label):
        if is_trained(store, run, epochs, keep):  # another worker trained it meanwhile
            return []
        return _train_locked(store, run, init=init, step_for_epoch=step_for_epoch, data=data,
                             epochs=epochs, batch_size=batch_size, seed=seed, keep=keep)


def _train_locked(store: Store, run: Run, *, init: Callable[[], TrainState],
                  step_for_epoch: Callable[[int], Step], data: Data, epochs: int,
                  batch_size: int, seed: int, keep: list[float]) -> list[int]:
    start = _resume_point(store, run, epochs, keep)
    state = template = init()
    if start > 0:
        payload = store.load(run.progress(start))
        if payload is None:  # corrupted, so discarded by the store: start over
            start = 0
        else:
            state = _restore(payload, template)
    per_epoch = steps_per_epoch(len(data), batch_size)
    kept_steps = {round(e * per_epoch): e for e in keep if not e.is_integer()}

    def save_checkpoint(epoch: float, variables: Variables) -> None:
        if epoch in keep and not store.exists(run.checkpoint(epoch)):
            store.save(run.checkpoint(epoch), {"variables": variables})

    def save_progress(epoch: int, state: TrainState) -> None:
        store.save(run.progress(epoch), {
            "variables": _saved_variables(state.variables),
            "opt_state": serialization.to_state_dict(jax.device_get(state.opt_state))})

    save_checkpoint(float(start), _saved_variables(state.variables))
    if not store.exists(run.progress(start)):
        save_progress(start, state)
    trained = []
    began = time.perf_counter()
    for epoch in progress(range(start, epochs), desc=run.label, unit="epoch"):
        offset = epoch * per_epoch
        cuts = {step - offset: e for step, e in kept_steps.items()
                if offset < step <= offset + per_epoch}
        state, fractional = train_epoch(state, step_for_epoch(epoch), data,
                                        batch_size=batch_size, seed=seed, epoch=epoch,
                                        cuts=cuts, label=run.label)
        for cut, variables in fractional.items():
            save_checkpoint(cuts[cut], variables)
        save_checkpoint(float(epoch + 1), _saved_variables(state.variables))
        save_progress(epoch + 1, state)
        store.delete(run.progress(epoch))
        trained.append(epoch)
    if trained:
        log.info("%s: trained epochs %d-%d in %.1f s", run.label, trained[0], trained[-1],
                 time.perf_counter() - began)
    return trained
