"""Resumable, cached training runs.

A *run* is identified by a spec holding everything its weights depend on except how long
it trains. Its kept checkpoints (``{"kind": "checkpoint", "run": spec, "epoch": e}``)
hold the variables at epoch ``e`` (fractional epochs allowed); a single *progress* entry
holds the full training state (variables and optimiser) of the last finished epoch. A killed
run resumes from that entry; a longer run extends a shorter one. Training is a pure function
of the spec (batch order and PGD keys derive from seed, epoch and step), so a resumed run
ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable

import jax
from flax import serialization
from tqdm.auto import tqdm

from ntkbook.store import Spec, Store
from ntkbook.train import TrainState, Variables, run_epoch, steps_per_epoch

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


def train_run(store: Store, run: Run, *, init: Callable[[], TrainState],
              step_for_epoch: Callable[[int], Callable], images, labels, epochs: int,
              batch_size: int, seed: int, keep: Iterable[float]) -> list[int]:
    """Train ``run`` to ``epochs``, saving the checkpoints in ``keep``; return epochs trained.

    Does nothing when every kept checkpoint already exists.
    """
    keep = sorted(float(e) for e in keep)
    if all(store.exists(run.checkpoint(e)) for e in keep) and store.exists(run.progress(epochs)):
        return []
    start = _resume_point(store, run, epochs, keep)
    state = template = init()
    if start > 0:
        payload = store.load(run.progress(start))
        if payload is None:  # corrupted, so discarded by the store: start over
            start = 0
        else:
            state = _restore(payload, template)
    per_epoch = steps_per_epoch(len(labels), batch_size)
    kept_steps = {round(e * per_epoch): e for e in keep if not e.is_integer()}

    def save_checkpoint(epoch: float, state: TrainState) -> None:
        if epoch in keep and not store.exists(run.checkpoint(epoch)):
            store.save(run.checkpoint(epoch), {"variables": _saved_variables(state.variables)})

    def save_progress(epoch: int, state: TrainState) -> None:
        store.save(run.progress(epoch), {
            "variables": _saved_variables(state.variables),
            "opt_state": serialization.to_state_dict(jax.device_get(state.opt_state))})

    def after_step(global_step: int, state: TrainState) -> None:
        if global_step in kept_steps:
            save_checkpoint(kept_steps[global_step], state)

    save_checkpoint(float(start), state)
    if not store.exists(run.progress(start)):
        save_progress(start, state)
    trained = []
    began = time.perf_counter()
    for epoch in tqdm(range(start, epochs), desc=run.label, unit="epoch", leave=False):
        state = run_epoch(state, step_for_epoch(epoch), images, labels, batch_size=batch_size,
                          seed=seed, epoch=epoch, after_step=after_step)
        save_checkpoint(float(epoch + 1), state)
        save_progress(epoch + 1, state)
        store.delete(run.progress(epoch))
        trained.append(epoch)
    if trained:
        log.info("%s: trained epochs %d-%d in %.1f s", run.label, trained[0], trained[-1],
                 time.perf_counter() - began)
    return trained

