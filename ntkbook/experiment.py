"""The paper's protocol on top of a profile: stage-1 and stage-2 runs and their evaluations.

Every function here is cached in the store under a spec holding exactly the profile keys
it depends on: changing the stage-2 learning rate, say, reuses every stage-1 checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ntkbook import data, models
from ntkbook.config import Profile
from ntkbook.evaluate import accuracy, evaluate, evaluate_transfer, first_order_ratio, tau
from ntkbook.progress import progress
from ntkbook.runs import Data, Run, load_checkpoint, train_run
from ntkbook.store import Spec, Store
from ntkbook.train import SGD, AttackSettings, Variables, forward_fn, init_state, make_train_step

SPEC_VERSION = 2  # bump when a change of code changes what an artifact holds


def model_for(cfg: Profile):
    return models.build_model(cfg.model, cfg.num_classes, cfg.width)


def train_split(cfg: Profile) -> data.Split:
    return data.balanced_subset(cfg.dataset, "train", cfg.n_train)


@functools.lru_cache(maxsize=4)
def _on_device(split: data.Split) -> Data:
    return Data(jax.device_put(split.images), jax.device_put(split.labels))


def test_split(cfg: Profile) -> data.Split:
    return data.balanced_subset(cfg.dataset, "test", cfg.n_test)


def train_attack(cfg: Profile) -> AttackSettings:
    return AttackSettings(cfg.eps, cfg.train_pgd_steps, cfg.train_pgd_step_size)


def eval_attack(cfg: Profile) -> AttackSettings:
    return AttackSettings(cfg.eps, cfg.eval_pgd_steps, cfg.eval_pgd_step_size)


def _training_spec(cfg: Profile, adversarial: bool) -> Spec:
    spec = {"version": SPEC_VERSION, "dataset": cfg.dataset, "model": cfg.model,
            "width": cfg.width, "n_train": cfg.n_train, "data": train_split(cfg).digest,
            "batch_size": cfg.batch_size, "momentum": cfg.momentum}
    if adversarial:
        spec["attack"] = {"eps_255": cfg.eps_255, "steps": cfg.train_pgd_steps,
                          "variant": cfg.adversarial_step}
    return spec


def _train(store: Store, cfg: Profile, run: Run, *, initial: Callable[[], Variables], lr: float,
           forward, adversarial_from: float, epochs: int, seed: int,
           keep: list[float]) -> list[int]:
    """Train ``run`` with SGD from ``initial()`` (called only if there is work to do); epochs
    from ``adversarial_from`` on are adversarial."""
    optimiser = SGD(lr, cfg.momentum)
    steps = {False: make_train_step(forward, optimiser)}
    if adversarial_from < math.inf:
        steps[True] = make_train_step(forward, optimiser, attack=train_attack(cfg),
                                      clean_first=cfg.adversarial_step == "clean_then_adversarial")
    return train_run(store, run, init=lambda: init_state(initial(), optimiser),
                     step_for_epoch=lambda epoch: steps[epoch >= adversarial_from],
                     data=_on_device(train_split(cfg)), epochs=epochs,
                     batch_size=cfg.batch_size, seed=seed, keep=keep)


# --- stage 1 ---------------------------------------------------------------------------

def stage1_run(cfg: Profile, seed: int, mode: str) -> Run:
    """Stage 1 of ``mode`` (benign, adversarial, flip) for ``seed``; epochs are not part of it."""
    spec = {"stage": 1, **_training_spec(cfg, mode != "benign"), "lr": cfg.stage1_lr,
            "seed": seed, "mode": mode}
    if mode == "flip":
        spec["flip_epoch"] = cfg.flip_epoch
    return Run(spec, f"stage 1 {mode} seed {seed}")


def _adversarial_from(cfg: Profile, mode: str) -> float:
    return {"benign": math.inf, "adversarial": 0, "flip": cfg.flip_epoch}[mode]


def ensure_stage1(cfg: Profile, seed: int, mode: str, store: Store,
                  until: float | None = None) -> list[int]:
    """Train (or resume) stage 1 up to ``until`` (default: the profile's end); return epochs
    trained now."""
    epochs = cfg.stage1_epochs if until is None else math.ceil(until)
    keep = [e for e in cfg.checkpoint_epochs if e <= epochs]
    return _train(store, cfg, stage1_run(cfg, seed, mode),
                  initial=lambda: models.init_variables(model_for(cfg), jax.random.PRNGKey(seed)),
                  lr=cfg.stage1_lr, forward=forward_fn(model_for(cfg), "standard", True),
                  adversarial_from=_adversarial_from(cfg, mode), epochs=epochs, seed=seed,
                  keep=keep)


def stage1_variables(cfg: Profile, seed: int, mode: str, epoch: float,
                     store: Store) -> Variables:
    """``{'params', 'batch_stats'}`` of the stage-1 network at ``epoch``."""
    run = stage1_run(cfg, seed, mode)
    if not store.exists(run.checkpoint(epoch)):
        ensure_stage1(cfg, seed, mode, store, until=epoch)
    return load_checkpoint(store, run, epoch, {})


# --- stage 2 ---------------------------------------------------------------------------

def stage2_run(cfg: Profile, seed: int, mode: str, spawn_epoch: float, dynamics: str, *,
               adversarial: bool = False, update_bn: bool = False,
               lr: float | None = None) -> Run:
    """Stage 2 with ``dynamics`` around the stage-1 checkpoint at ``spawn_epoch``."""
    lr = cfg.stage2_lr if lr is None else lr
    spec = {"stage": 2, **_training_spec(cfg, adversarial), "lr": lr, "seed": seed,
            "parent": stage1_run(cfg, seed, mode).checkpoint(spawn_epoch),
            "dynamics": dynamics, "update_bn": update_bn}
    data_kind = "adversarial" if adversarial else "benign"
    label = (f"stage 2 {dynamics} ({data_kind} data, {'updating' if update_bn else 'frozen'} "
             f"BN, lr {lr:g}) on {mode} t={spawn_epoch:g} seed {seed}")
    return Run(spec, label)


def stage2_variables(cfg: Profile, seed: int, mode: str, spawn_epoch: float, dynamics: str,
                     store: Store, **options: Any) -> Variables:
    """Variables (with the parent's ``params_t``) after ``cfg.stage2_epochs`` of stage 2."""
    run = stage2_run(cfg, seed, mode, spawn_epoch, dynamics, **options)
    parent = stage1_variables(cfg, seed, mode, spawn_epoch, store)
    start = {**parent, "params_t": parent["params"]}
    if not store.exists(run.checkpoint(cfg.stage2_epochs)):
        forward = forward_fn(model_for(cfg), dynamics, options.get("update_bn", False))
        _train(store, cfg, run, initial=lambda: start, lr=run.spec["lr"], forward=forward,
               adversarial_from=0 if options.get("adversarial") else math.inf,
               epochs=cfg.stage2_epochs, seed=seed, keep=[cfg.stage2_epochs])
    return load_checkpoint(store, run, cfg.stage2_epochs, start)


# --- trained networks and their evaluations -------------------------------------------

@dataclasses.dataclass(frozen=True)
class Network:
    """A finished network: the checkpoint it lives in, the dynamics it is evaluated with, and
    how to get its variables (called only when a cached result is missing)."""

    checkpoint: Spec
    dynamics: str
    load: Callable[[], Variables]
    label: str

    @property
    def spec(self) -> Spec:
        return {"checkpoint": self.checkpoint, "dynamics": self.dynamics}


def stage1_network(cfg: Profile, seed: int, mode: str, epoch: float, store: Store) -> Network:
    """The stage-1 network of ``mode`` at ``epoch`` (standard dynamics)."""
    return Network(stage1_run(cfg, seed, mode).checkpoint(epoch), "standard",
                   lambda: stage1_variables(cfg, seed, mode, epoch, store),
                   f"{mode} stage 1 at epoch {epoch:g}, seed {seed}")


def stage2_network(cfg: Profile, seed: int, mode: str, spawn_epoch: float, dynamics: str,
                   store: Store, **options: Any) -> Network:
    """The finished stage-2 network with ``dynamics`` spawned at ``spawn_epoch``."""
    run = stage2_run(cfg, seed, mode, spawn_epoch, dynamics, **options)
    return Network(run.checkpoint(cfg.stage2_epochs), dynamics,
                   lambda: stage2_variables(cfg, seed, mode, spawn_epoch, dynamics, store,
                                            **options), run.label)


@dataclasses.dataclass(frozen=True)
class NetworkId:
    """Names a network of the book without building it: the stage-1 network of (seed, mode)
    at ``epoch`` when ``dynamics`` is standard, else the stage-2 network with ``dynamics``
    spawned there (with its options)."""

    seed: int
    mode: str
    epoch: float
    dynamics: str = "standard"
    lr: float | None = None
    update_bn: bool = False
    adversarial: bool = False

    @property
    def stage(self) -> int:
        return 1 if self.dynamics == "standard" else 2

    def options(self) -> dict[str, Any]:
        """The non-default stage-2 options, as :func:`stage2_run` takes them."""
        return {k: v for k, v in (("lr", self.lr), ("update_bn", self.update_bn),
                                  ("adversarial", self.adversarial)) if v}

    def at(self, seed: int) -> NetworkId:
        """The same network for ``seed``."""
        return dataclasses.replace(self, seed=seed)

    def parent(self) -> NetworkId:
        """The stage-1 network this one starts from (itself for a stage-1 network)."""
        return NetworkId(self.seed, self.mode, self.epoch)


def network(cfg: Profile, store: Store, nid: NetworkId) -> Network:
    """The :class:`Network` named by ``nid``."""
    if nid.stage == 1:
        return stage1_network(cfg, nid.seed, nid.mode, nid.epoch, store)
    return stage2_network(cfg, nid.seed, nid.mode, nid.epoch, nid.dynamics, store,
                          **nid.options())


def test_spec(cfg: Profile) -> Spec:
    return {"version": SPEC_VERSION, "dataset": cfg.dataset, "n_test": cfg.n_test,
            "data": test_split(cfg).digest, "batch_size": cfg.eval_batch_size,
            "attack": {"eps_255": cfg.eps_255, "steps": cfg.eval_pgd_steps}}


def _forward(cfg: Profile, network: Network):
    return forward_fn(model_for(cfg), network.dynamics)


def evaluation_masks(cfg: Profile, store: Store, network: Network) -> dict[str, np.ndarray]:
    """Cached per-image correctness on the test subset, ``{'clean', 'robust'}`` (PGD through
    ``network`` itself), booleans in the test subset's order."""
    def compute() -> dict[str, np.ndarray]:
        split = test_split(cfg)
        return evaluate(_forward(cfg, network), network.load(), split.images, split.labels,
                        eval_attack(cfg), batch_size=cfg.eval_batch_size)

    return {k: np.asarray(v, bool)
            for k, v in store.get_or_compute(_evaluation_spec(cfg, network), compute).items()}


def _evaluation_spec(cfg: Profile, network: Network) -> Spec:
    return {"kind": "evaluation", "per_image": True, **network.spec, **test_spec(cfg)}


def evaluation(cfg: Profile, store: Store, network: Network) -> dict[str, float]:
    """Clean and PGD test accuracy (%) of :func:`evaluation_masks`."""
    return {k: accuracy(v) for k, v in evaluation_masks(cfg, store, network).items()}


def evaluate_stage1(cfg: Profile, seed: int, mode: str, epoch: float,
                    store: Store) -> dict[str, float]:
    """Clean and PGD test accuracy (%) of the stage-1 network at ``epoch``."""
    return evaluation(cfg, store, stage1_network(cfg, seed, mode, epoch, store))


def evaluate_stage2(cfg: Profile, seed: int, mode: str, spawn_epoch: float, dynamics: str,
                    store: Store, **options: Any) -> dict[str, float]:
    """Clean and PGD test accuracy (%) of a finished stage-2 network, attacked through its
    own dynamics."""
    return evaluation(cfg, store,
                      stage2_network(cfg, seed, mode, spawn_epoch, dynamics, store, **options))


def stage1_curves(cfg: Profile, store: Store, epochs: list[float]) -> dict[str, np.ndarray]:
    """Per mode, an array (seeds, epochs, 2) of clean and robust accuracy."""
    return {mode: np.array([[[r["clean"], r["robust"]]
                             for r in (evaluate_stage1(cfg, seed, mode, e, store)
                                       for e in epochs)]
                            for seed in cfg.seeds])
            for mode in cfg.modes}


def over_seeds(seeds: tuple[int, ...], rows: dict[str, Callable[[int], dict[str, Any]]],
               description: str) -> dict[str, dict[str, np.ndarray]]:
    """``{row: {column: array over seeds}}`` of ``rows[row](seed) -> {column: value}``,
    with a progress bar."""
    jobs = [(name, seed) for name in rows for seed in seeds]
    values = {(name, seed): rows[name](seed)
              for name, seed in progress(jobs, desc=description)}
    return {name: {column: np.array([values[name, seed][column] for seed in seeds])
                   for column in values[name, seeds[0]]}
            for name in rows}


def transfer_accuracy(cfg: Profile, store: Store, source: Network, target: Network) -> float:
    """Cached accuracy (%) of ``target`` on PGD test examples made against ``source`` (kept
    per image in the cache). These are the examples of ``source``'s own evaluation (same
    attack, keys and batches), so when that evaluation is not cached yet it is made from the
    same examples and saved too: one PGD pass serves both."""
    def compute() -> dict[str, np.ndarray]:
        split = test_split(cfg)
        own = None if store.exists(_evaluation_spec(cfg, source)) else {}
        correct = evaluate_transfer(
            _forward(cfg, source), source.load(), _forward(cfg, target), target.load(),
            split.images, split.labels, eval_attack(cfg), batch_size=cfg.eval_batch_size,
            source_masks=own)
        if own is not None:
            store.save(_evaluation_spec(cfg, source), own)
        return {"correct": correct}

    spec = {"kind": "transfer", "per_image": True, "source": source.spec,
            "target": target.spec, **test_spec(cfg)}
    return accuracy(np.asarray(store.get_or_compute(spec, compute)["correct"], bool))


def transferability(cfg: Profile, store: Store, source: Network, target: Network) -> float:
    """The paper's tau of ``source``'s adversarial examples on ``target`` (section 5)."""
    own = evaluation(cfg, store, target)
    return tau(own["clean"], transfer_accuracy(cfg, store, source, target), own["robust"])


def relative_magnitude(cfg: Profile, store: Store, network: Network) -> float:
    """Cached mean over the test set of ||f(x) - f(x; theta_t)||^2 / ||f(x; theta_t)||^2 for
    a stage-2 network (for linearized dynamics: first- over zeroth-order term)."""
    def compute() -> dict[str, float]:
        variables = network.load()
        model = model_for(cfg)
        return {"ratio": first_order_ratio(
            forward_fn(model, "centered"), forward_fn(model, "standard"), variables,
            test_split(cfg).images, batch_size=cfg.eval_batch_size)}

    spec = {"kind": "relative_magnitude", "checkpoint": network.checkpoint,
            **test_spec(cfg)}
    return float(store.get_or_compute(spec, compute)["ratio"])
