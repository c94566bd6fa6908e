"""Kernels of trained networks as cached artifacts, and what sections 3, 6 and 8 compute.

A kernel is keyed by the network's checkpoint and dynamics, the image subset and the kind.
On CIFAR-10 every study kernel is the per-class stack (C, N, N): the trace kernel is its mean
and the dog-logit kernel one slice, so one computation serves sections 3, 6 and 8. With 100
classes only the trace kernel is kept (as the paper, no specialisation there).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import numpy as np

from ntkbook import data, eigenimages, kernels
from ntkbook.config import Profile
from ntkbook.experiment import (SPEC_VERSION, Network, NetworkId, model_for, over_seeds,
                                stage1_network, train_split)
from ntkbook.store import Spec, Store
from ntkbook.train import Forward, forward_fn

log = logging.getLogger(__name__)

KERNEL_SUBSET_SEED = 1  # one fixed kernel subset of the training subset per profile
PER_CLASS_UP_TO = 10  # classes for which the per-class kernels are kept


def kernel_images(cfg: Profile) -> data.Split:
    """``n_kernel`` class-balanced images of the training subset (seeded, always the same)."""
    split = train_split(cfg)
    return split.take(data.balanced_indices(split.labels, cfg.n_kernel, cfg.num_classes,
                                            KERNEL_SUBSET_SEED))


def _images_spec(cfg: Profile) -> Spec:
    return {"version": SPEC_VERSION, "dataset": cfg.dataset, "n_train": cfg.n_train,
            "data": train_split(cfg).digest, "n_kernel": cfg.n_kernel,
            "seed": KERNEL_SUBSET_SEED}


@functools.lru_cache(maxsize=None)
def _logits_fn(forward: Forward) -> Callable:
    """``(params, x, context) -> logits`` through ``forward`` (BatchNorm in eval mode), with
    the network's other variables (statistics, parent parameters) as ``context``: one
    compiled program serves every checkpoint."""
    def logits(params, x, context):
        return forward({**context, "params": params}, x, False)[0]

    return logits


def _network_function(cfg: Profile, network: Network) -> tuple[Callable, dict, dict]:
    """The network's logits function, its parameters and its context."""
    variables = network.load()
    context = {k: v for k, v in variables.items() if k != "params"}
    return (_logits_fn(forward_fn(model_for(cfg), network.dynamics)), variables["params"],
            context)


def network_kernel(cfg: Profile, store: Store, network: Network,
                   kind: kernels.KernelKind) -> np.ndarray:
    """The cached empirical NTK of ``network`` (through its dynamics, BatchNorm in eval mode)
    on the kernel images."""
    def compute() -> dict[str, np.ndarray]:
        logits, params, context = _network_function(cfg, network)
        start = time.perf_counter()
        kernel = kernels.empirical_ntk(logits, params, kernel_images(cfg).images, kind=kind,
                                       context=context)
        log.info("kernel %s of %s in %.1f s", kind, network.label, time.perf_counter() - start)
        return {"kernel": kernel}

    spec = {"kind": "kernel", **network.spec, "images": _images_spec(cfg),
            "kernel": list(kind) if isinstance(kind, tuple) else kind}
    return np.asarray(store.get_or_compute(spec, compute)["kernel"])


def study_kernel(cfg: Profile, store: Store, network: Network) -> np.ndarray:
    """Per-class kernels (C, N, N) for up to 10 classes, else the trace kernel (N, N)."""
    kind = "per_class" if cfg.num_classes <= PER_CLASS_UP_TO else "trace"
    return network_kernel(cfg, store, network, kind)


def trace_of(kernel: np.ndarray) -> np.ndarray:
    """The trace kernel (mean of the class kernels) of a study kernel."""
    return kernel.mean(axis=0) if kernel.ndim == 3 else kernel


def trace_kernel(cfg: Profile, store: Store, network: Network) -> np.ndarray:
    return trace_of(study_kernel(cfg, store, network))


def logit_kernel(cfg: Profile, store: Store, network: Network, logit: int) -> np.ndarray:
    """The kernel of one logit: a slice of the per-class stack when it is kept."""
    kernel = study_kernel(cfg, store, network)
    if kernel.ndim == 3:
        return kernel[logit]
    return network_kernel(cfg, store, network, ("logit", logit))


# --- section 3 -------------------------------------------------------------------------

STATISTICS = ("velocity", "distance_to_final", "effective_rank", "mean_specialization")


def kernel_evolution(cfg: Profile, store: Store, seed: int, mode: str,
                     epochs: list[float]) -> dict[str, np.ndarray]:
    """Figure 1's statistics of one stage-1 run at ``epochs`` (the last is 'final').

    ``velocity[i]`` is dS/dt between ``epochs[i]`` and ``epochs[i + 1]``, plotted at the later
    epoch; ``mean_specialization`` is NaN when class kernels are not kept (CIFAR-100).
    """
    stacks = [study_kernel(cfg, store, stage1_network(cfg, seed, mode, e, store))
              for e in epochs]
    traces = [trace_of(k) for k in stacks]
    labels = kernel_images(cfg).labels
    return {
        "velocity": kernels.kernel_velocity(epochs, traces),
        "distance_to_final": np.array([kernels.kernel_distance(k, traces[-1]) for k in traces]),
        "effective_rank": np.array([kernels.effective_rank(k) for k in traces]),
        "mean_specialization": np.array([
            kernels.mean_specialization(k, labels) if k.ndim == 3 else np.nan for k in stacks]),
    }


def evolution_by_mode(cfg: Profile, store: Store,
                      epochs: list[float]) -> dict[str, dict[str, np.ndarray]]:
    """``{mode: {statistic: (seeds, ...)}}`` of :func:`kernel_evolution` for every mode."""
    def run(mode: str) -> Callable[[int], dict[str, np.ndarray]]:
        return lambda seed: kernel_evolution(cfg, store, seed, mode, epochs)

    return over_seeds(cfg.seeds, {mode: run(mode) for mode in cfg.modes},
                      "kernels of stage-1 runs")


def early_index(cfg: Profile) -> int:
    """The checkpoint nearest 30 % of stage 1 (the paper's "converges early": within about
    30 of 100 epochs)."""
    epochs = list(cfg.checkpoint_epochs)
    return min(range(len(epochs)), key=lambda i: abs(epochs[i] - 0.3 * cfg.stage1_epochs))


def across_seeds(distances: np.ndarray) -> np.ndarray:
    """Per seed i, the mean of a (seeds, seeds) matrix of distances over the other seeds j:
    how far seed i's kernel is from kernels of other initialisations."""
    n = len(distances)
    return (distances.sum(axis=1) - np.diag(distances)) / (n - 1)


# --- section 8 -------------------------------------------------------------------------

def eigen_networks(cfg: Profile) -> dict[str, NetworkId]:
    """Figure 4's kernels (first seed): at initialisation, and at the end of benign and of
    adversarial stage 1 where the profile trains them."""
    seed, end = cfg.seeds[0], float(cfg.stage1_epochs)
    networks = {"initial": NetworkId(seed, cfg.modes[0], 0.0)}
    for mode in ("benign", "adversarial"):
        if mode in cfg.modes:
            networks[f"final {mode}"] = NetworkId(seed, mode, end)
    return networks


def eigen_images(cfg: Profile, store: Store, network: Network) -> dict[str, np.ndarray]:
    """Cached images of the top ``eigen_vectors`` eigenvectors of the ``eigen_logit`` kernel.

    Keys: ``eigenvalues`` (k,), ``maximised`` / ``minimised`` images (k, 32, 32, 3), and the
    feature cosines ``cosine_start``, ``cosine_maximised``, ``cosine_minimised`` (k,).
    """
    def compute() -> dict[str, np.ndarray]:
        logits, params, context = _network_function(cfg, network)
        logit_fn = eigenimages.one_logit(logits, cfg.eigen_logit)
        values, vectors = eigenimages.top_eigenvectors(
            logit_kernel(cfg, store, network, cfg.eigen_logit), cfg.eigen_vectors)
        directions = eigenimages.parameter_directions(logit_fn, params, context,
                                                      kernel_images(cfg).images, vectors)
        out = {"eigenvalues": values}
        for name, maximise, steps in (("start", True, 0), ("maximised", True, cfg.eigen_steps),
                                      ("minimised", False, cfg.eigen_steps)):
            pictures, out[f"cosine_{name}"] = eigenimages.optimise_images(
                logit_fn, params, context, directions, steps=steps,
                step_size=cfg.eigen_step_size, maximise=maximise)
            if name != "start":
                out[name] = pictures
        return out

    spec = {"kind": "eigen_images", **network.spec, "images": _images_spec(cfg),
            "logit": cfg.eigen_logit, "vectors": cfg.eigen_vectors, "steps": cfg.eigen_steps,
            "step_size": cfg.eigen_step_size}
    return {k: np.asarray(v) for k, v in store.get_or_compute(spec, compute).items()}
