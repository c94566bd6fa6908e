"""Is the robustness real? Robust accuracy under the strongest attacks we have.

A robust accuracy is a claim about the strongest attack, not about PGD. For a network this
module measures, on ``audit_images`` class-balanced test images (every number a cached
artifact):

- each attack of the ensemble alone (:func:`ensemble`): the book's PGD, PGD with restarts,
  APGD-CE, targeted APGD (DLR) and Square (no gradients);
- the worst case (:func:`worst_case`): an image counts as robust only if it survives every
  attack, AutoAttack's rule: each attack only sees the images that are still robust;
- the gradient-masking checklist of Carlini et al. (2019) (:func:`checklist`): accuracy
  falls to about 0 as eps grows; more PGD iterations do not raise accuracy; restarts change
  little; black-box (Square) and transfer attacks (PGD examples of a standard-dynamics
  network) are weaker than the white-box ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ntkbook import attacks, data
from ntkbook.compilation import jit
from ntkbook.config import Profile
from ntkbook.experiment import SPEC_VERSION, Network, NetworkId, model_for, network, test_split
from ntkbook.progress import progress
from ntkbook.store import Spec, Store
from ntkbook.train import Forward, forward_fn

AUDIT_SUBSET_SEED = 2
LARGE_EPS = 0.5  # the checklist's largest radius: half the pixel range
EPS_MULTIPLIERS = (1, 2, 4, 8)
STEP_MULTIPLIERS = (1, 2, 4)
AUDIT_BATCH = 100  # images per attacked batch at most: the survivors of earlier attacks are few
PAD_MULTIPLE = 20  # a short batch is padded to the next multiple of this, not to a full batch
TOLERANCE_POINTS = 1.0  # differences below this (and below one image) are noise


@dataclasses.dataclass(frozen=True)
class Attack:
    """One L-inf attack and its settings; ``name`` is how tables show it."""

    name: str
    kind: str  # pgd | pgd_restarts | apgd | apgd_t | square
    eps: float
    steps: int = 0
    restarts: int = 1
    loss: str = "ce"
    targets: int = 0
    queries: int = 0

    @property
    def shape(self) -> Attack:
        """The attack without its name and radius: what one compiled program serves."""
        return dataclasses.replace(self, name="", eps=0.0)

    def apply(self, logits_fn: attacks.LogitsFn, x: jax.Array, y: jax.Array, key: jax.Array,
              eps: jax.Array, target: jax.Array) -> jax.Array:
        """Adversarial examples at radius ``eps`` (``target``: APGD-T's class per image)."""
        step_size = 2.0 * eps / max(self.steps, 1)
        if self.kind == "pgd":
            return attacks.pgd_linf(logits_fn, x, y, eps=eps, steps=self.steps,
                                    step_size=step_size, key=key)
        if self.kind == "pgd_restarts":
            return attacks.pgd_restarts(logits_fn, x, y, eps=eps, steps=self.steps,
                                        step_size=step_size, key=key, restarts=self.restarts)
        if self.kind in ("apgd", "apgd_t"):
            return attacks.apgd_linf(logits_fn, x, y, eps=eps, steps=self.steps, key=key,
                                     loss=self.loss,
                                     target=target if self.kind == "apgd_t" else None)
        if self.kind == "square":
            return attacks.square_linf(logits_fn, x, y, eps=eps, queries=self.queries, key=key)
        raise ValueError(f"unknown attack kind {self.kind!r}")

    def spec(self) -> Spec:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "name"}


def book_pgd(cfg: Profile, eps: float | None = None, steps: int | None = None) -> Attack:
    """The book's evaluation PGD (``eval_pgd_steps``, step 2 eps / steps, one random start)."""
    steps = cfg.eval_pgd_steps if steps is None else steps
    return Attack("PGD", "pgd", cfg.eps if eps is None else eps, steps)


def ensemble(cfg: Profile) -> list[Attack]:
    """The attacks of the worst case, cheapest first (later ones see only survivors)."""
    return [book_pgd(cfg),
            Attack(f"PGD-{cfg.audit_steps} x{cfg.audit_restarts}", "pgd_restarts", cfg.eps,
                   cfg.audit_steps, restarts=cfg.audit_restarts),
            Attack("APGD-CE", "apgd", cfg.eps, cfg.audit_steps),
            Attack("APGD-T", "apgd_t", cfg.eps, cfg.audit_steps, loss="dlr",
                   targets=min(cfg.audit_targets, cfg.num_classes - 1)),
            Attack("Square", "square", cfg.eps, queries=cfg.audit_queries)]


# --- the audited images and the cached results -------------------------------------------

def audit_images(cfg: Profile) -> data.Split:
    """``audit_images`` class-balanced images of the test subset (seeded, always the same)."""
    split = test_split(cfg)
    return split.take(data.balanced_indices(split.labels, cfg.audit_images, cfg.num_classes,
                                            AUDIT_SUBSET_SEED))


def checklist_positions(cfg: Profile) -> np.ndarray:
    """Positions, among the audited images, of the ``checklist_images`` that the
    gradient-masking checklist attacks (class-balanced, seeded; all of them when equal)."""
    return data.balanced_indices(audit_images(cfg).labels, cfg.checklist_images,
                                 cfg.num_classes, AUDIT_SUBSET_SEED)


def batch_size(cfg: Profile) -> int:
    """Images per attacked batch: at most the evaluation batch, the audited images, and
    :data:`AUDIT_BATCH` (a batch is padded to this size, so it is kept small)."""
    return min(cfg.eval_batch_size, cfg.audit_images, AUDIT_BATCH)


def _images_spec(cfg: Profile, checklist: bool = False) -> Spec:
    spec = {"version": SPEC_VERSION, "dataset": cfg.dataset, "n_test": cfg.n_test,
            "data": test_split(cfg).digest, "audit_images": cfg.audit_images,
            "seed": AUDIT_SUBSET_SEED, "batch_size": batch_size(cfg), "pad_multiple": PAD_MULTIPLE}
    if checklist and cfg.checklist_images < cfg.audit_images:
        spec["checklist_images"] = cfg.checklist_images
    return spec


@jit(static_argnames=("shape", "forward"))
def _attack_batch(shape: Attack, forward: Forward, variables: Any, x: jax.Array, y: jax.Array,
                  key: jax.Array, eps: jax.Array, target: jax.Array) -> jax.Array:
    return shape.apply(lambda z: forward(variables, z, False)[0], x, y, key, eps, target)


@jit(static_argnames=("forward",))
def _logits(forward: Forward, variables: Any, x: jax.Array) -> jax.Array:
    return forward(variables, x, False)[0]


def adversarial(attack: Attack, forward: Forward, variables: Any, x: np.ndarray, y: np.ndarray,
                key: jax.Array) -> jax.Array:
    """``attack``'s examples against (forward, variables); APGD-T runs one compiled APGD per
    target class and keeps, per image, the first success or the most damaging example."""
    eps = jnp.float32(attack.eps)
    if attack.kind != "apgd_t":
        return _attack_batch(attack.shape, forward, variables, x, y, key, eps,
                             jnp.zeros(len(y), jnp.int32))
    clean = _logits(forward, variables, x)
    ranked = attacks.ranked_targets(clean, y)
    best, best_margin = jnp.asarray(x), attacks.margin(clean, y)
    for k in range(min(attack.targets, clean.shape[-1] - 1)):
        candidate = _attack_batch(attack.shape, forward, variables, x, y,
                                  jax.random.fold_in(key, k), eps, ranked[:, k])
        best, best_margin = attacks.keep_most_damaging(
            best, best_margin, candidate, attacks.margin(_logits(forward, variables, candidate), y))
    return best


@jit(static_argnames=("forward",))
def _correct(forward: Forward, variables: Any, x: jax.Array, y: jax.Array) -> jax.Array:
    return forward(variables, x, False)[0].argmax(-1) == y


def padded_size(count: int, size: int) -> int:
    """The shape a batch of ``count`` images runs at: ``size``, or for a shorter batch the
    next multiple of :data:`PAD_MULTIPLE` (few shapes to compile, little padding to attack)."""
    return min(size, -(-count // PAD_MULTIPLE) * PAD_MULTIPLE)


def padded_count(count: int, size: int) -> int:
    """Images actually attacked when ``count`` of them run in batches of ``size``."""
    full = count // size * size
    return full + (padded_size(count - full, size) if count > full else 0)


def _batched(fn, images: np.ndarray, labels: np.ndarray, size: int) -> np.ndarray:
    """``fn(x, y, batch_index) -> per-image array`` over batches of ``size``; a short last
    batch is padded (repeating its first image) to :func:`padded_size`."""
    out = []
    for b, start in enumerate(range(0, len(images), size)):
        x, y = images[start:start + size], labels[start:start + size]
        pad = padded_size(len(x), size) - len(x)
        if pad:
            x = np.concatenate([x, np.repeat(x[:1], pad, 0)])
            y = np.concatenate([y, np.repeat(y[:1], pad, 0)])
        out.append(np.asarray(fn(x, y, b))[:len(x) - pad])
    return np.concatenate(out) if out else np.zeros(0, bool)


def _survivors(cfg: Profile, forward: Forward, variables: Any, attack: Attack,
               images: np.ndarray, labels: np.ndarray, *, source: tuple[Forward, Any] | None = None
               ) -> np.ndarray:
    """Per image: is it still classified correctly by (forward, variables) after ``attack``,
    made against ``source`` (default: the network itself)?"""
    maker = source or (forward, variables)
    key = jax.random.PRNGKey(0)

    def one_batch(x, y, b):
        x_adv = adversarial(attack, maker[0], maker[1], x, y, jax.random.fold_in(key, b))
        return _correct(forward, variables, x_adv, y)

    return _batched(one_batch, images, labels, batch_size(cfg))


def _forward(cfg: Profile, network: Network) -> Forward:
    return forward_fn(model_for(cfg), network.dynamics)


def clean_mask(cfg: Profile, store: Store, network: Network) -> np.ndarray:
    """Per audited image: classified correctly without attack (cached)."""
    def compute() -> dict[str, np.ndarray]:
        split = audit_images(cfg)
        forward, variables = _forward(cfg, network), network.load()
        return {"robust": _batched(lambda x, y, _: _correct(forward, variables, x, y),
                                   split.images, split.labels, batch_size(cfg))}

    spec = {"kind": "audit_clean", **network.spec, "images": _images_spec(cfg)}
    return np.asarray(store.get_or_compute(spec, compute)["robust"], bool)


def attack_mask(cfg: Profile, store: Store, network: Network, attack: Attack,
                source: Network | None = None, *, checklist: bool = False) -> np.ndarray:
    """Per audited image (``checklist``: per image of :func:`checklist_positions`): correct
    after ``attack`` (made against ``source``, default the network itself); images
    misclassified without attack count as broken. Cached."""
    def compute() -> dict[str, np.ndarray]:
        split = audit_images(cfg).take(positions)
        correct = clean_mask(cfg, store, network)[positions]
        robust = np.zeros(len(correct), bool)
        maker = None if source is None else (_forward(cfg, source), source.load())
        robust[correct] = _survivors(cfg, _forward(cfg, network), network.load(), attack,
                                     split.images[correct], split.labels[correct],
                                     source=maker)
        return {"robust": robust}

    positions = checklist_positions(cfg) if checklist else np.arange(cfg.audit_images)
    spec = {"kind": "audit_attack", **network.spec, "attack": attack.spec(),
            "source": None if source is None else source.spec,
            "images": _images_spec(cfg, checklist)}
    return np.asarray(store.get_or_compute(spec, compute)["robust"], bool)


@dataclasses.dataclass(frozen=True)
class WorstCase:
    """Per audited image: robust to every attack, and the first attack that broke it
    (``-1`` robust, ``-2`` misclassified without attack, else an index into the ensemble)."""

    robust: np.ndarray
    broken_by: np.ndarray

    @property
    def accuracy(self) -> float:
        return 100.0 * float(self.robust.mean())


def worst_case(cfg: Profile, store: Store, network: Network) -> WorstCase:
    """AutoAttack's rule over :func:`ensemble`: each attack runs only on the images every
    earlier attack left correctly classified (cached)."""
    def compute() -> dict[str, np.ndarray]:
        split = audit_images(cfg)
        robust = clean_mask(cfg, store, network).copy()
        broken_by = np.where(robust, -1, -2)
        forward, variables = _forward(cfg, network), network.load()
        for index, attack in enumerate(ensemble(cfg)):
            alive = np.flatnonzero(robust)
            if not len(alive):
                break
            if index == 0:  # the book's PGD on every correct image: the audit's cached mask
                kept = attack_mask(cfg, store, network, attack)[alive]
            else:
                kept = _survivors(cfg, forward, variables, attack, split.images[alive],
                                  split.labels[alive])
            broken_by[alive[~kept]] = index
            robust[alive[~kept]] = False
        return {"robust": robust, "broken_by": broken_by}

    spec = {"kind": "worst_case", **network.spec,
            "attacks": [a.spec() for a in ensemble(cfg)], "images": _images_spec(cfg)}
    result = store.get_or_compute(spec, compute)
    return WorstCase(np.asarray(result["robust"], bool), np.asarray(result["broken_by"]))


def worst_case_accuracy(cfg: Profile, store: Store, network: Network) -> float:
    """Robust accuracy (%) under the worst case of the ensemble, on the audited images."""
    return worst_case(cfg, store, network).accuracy


# --- the audit of one network -----------------------------------------------------------

def _percent(mask: np.ndarray) -> float:
    return 100.0 * float(np.mean(mask))


def audit(cfg: Profile, store: Store, network: Network, source: Network) -> dict[str, Any]:
    """Everything the audit page shows for ``network``; ``source`` is the standard-dynamics
    network whose PGD examples make the transfer attack.

    Keys: ``clean``, ``PGD`` (the book's) and ``worst case`` on the audited images; for the
    checklist, on its images (:func:`checklist_positions`): ``checklist clean``, each ensemble
    attack alone by name (``PGD`` again, under ``checklist PGD``), ``transfer``, ``eps sweep``
    ([(eps, accuracy)] with the book's PGD, the last at eps = 0.5) and ``steps sweep``
    ([(steps, accuracy)]); all in percent.
    """
    def on_checklist(attack: Attack, maker: Network | None = None) -> float:
        return _percent(attack_mask(cfg, store, network, attack, maker, checklist=True))

    clean, positions = clean_mask(cfg, store, network), checklist_positions(cfg)
    pgd = attack_mask(cfg, store, network, book_pgd(cfg))
    results: dict[str, Any] = {
        "clean": _percent(clean), "PGD": _percent(pgd),
        "worst case": worst_case_accuracy(cfg, store, network),
        "checklist clean": _percent(clean[positions]),
        "checklist PGD": _percent(pgd[positions])}  # the same attack: no second run
    for attack in ensemble(cfg)[1:]:
        results[attack.name] = on_checklist(attack)
    results["transfer"] = on_checklist(book_pgd(cfg), source)
    radii = [cfg.eps * m for m in EPS_MULTIPLIERS] + [LARGE_EPS]
    results["eps sweep"] = [(eps, on_checklist(book_pgd(cfg, eps=eps))) for eps in radii]
    results["steps sweep"] = [(steps, on_checklist(book_pgd(cfg, steps=steps)))
                              for steps in (cfg.eval_pgd_steps * m for m in STEP_MULTIPLIERS)]
    return results


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of the gradient-masking checklist."""

    check: str
    observed: str
    passed: bool


def tolerance(cfg: Profile, images: int | None = None) -> float:
    """Points below which two accuracies on ``images`` images (default: the audited ones)
    are not told apart."""
    return max(TOLERANCE_POINTS, 100.0 / (images or cfg.audit_images))


def checklist(cfg: Profile, results: dict[str, Any]) -> list[Check]:
    """Carlini et al.'s signs of gradient masking, on the numbers of :func:`audit`; a check
    that fails is a warning that the white-box numbers over-report robustness."""
    tol = tolerance(cfg, cfg.checklist_images)
    names = ["checklist PGD"] + [a.name for a in ensemble(cfg)][1:]
    white_box = min(results[name] for name in names if name != "Square")
    largest_eps, at_large_eps = results["eps sweep"][-1]
    steps = [acc for _, acc in results["steps sweep"]]
    rises = max(b - a for a, b in zip(steps[:-1], steps[1:], strict=True))
    restart_gain = results["checklist PGD"] - results[names[1]]
    return [
        Check(f"accuracy falls to ~0 at eps = {largest_eps:.2f}",
              f"{at_large_eps:.1f} %", at_large_eps <= max(5.0, tol)),
        Check("more PGD iterations never raise accuracy, and it has converged",
              ", ".join(f"{s}: {a:.1f}" for s, a in results["steps sweep"]),
              rises <= tol and steps[-2] - steps[-1] <= tol),
        Check("random restarts change little",
              f"PGD {results['checklist PGD']:.1f} vs {names[1]} {results[names[1]]:.1f}",
              restart_gain <= 2 * tol),
        Check("black-box (Square) is weaker than white-box",
              f"Square {results['Square']:.1f} vs white-box {white_box:.1f}",
              results["Square"] >= white_box - tol),
        Check("transfer from a standard network is weaker than white-box",
              f"transfer {results['transfer']:.1f} vs white-box {white_box:.1f}",
              results["transfer"] >= white_box - tol),
    ]


def verdict(cfg: Profile, results: dict[str, Any]) -> str:
    """In words: whether the book's PGD number survives the worst case."""
    gap = results["PGD"] - results["worst case"]
    if gap <= tolerance(cfg):
        return (f"robustness holds under the worst case ({results['worst case']:.1f} %, "
                f"PGD {results['PGD']:.1f} %)")
    return (f"PGD over-reported robustness by at least {gap:.1f} points (worst case "
            f"{results['worst case']:.1f} %; a stronger attack could only lower it)")


def budget(cfg: Profile) -> str:
    """The worst case's attacks and budgets, in words."""
    names = ", ".join(a.name + (f" ({a.steps} steps)" if a.kind in ("apgd", "apgd_t") else "")
                      + (f" ({a.targets} targets)" if a.targets else "")
                      + (f" ({a.queries} queries)" if a.queries else "")
                      for a in ensemble(cfg))
    checklist = ("" if cfg.checklist_images == cfg.audit_images else
                 f"; each attack alone and the checklist on {cfg.checklist_images} of them")
    return (f"worst case of {names}, on {cfg.audit_images} audited test images{checklist}: a "
            f"reduced AutoAttack-style ensemble, so its accuracies are upper bounds")


def mean_results(per_seed: Sequence[dict[str, Any]]) -> dict[str, float]:
    """PGD and worst-case accuracy, means over seeds (what :func:`verdict` reads)."""
    return {key: float(np.mean([r[key] for r in per_seed])) for key in ("PGD", "worst case")}


def over_reported(values: Sequence[dict[str, Any]]) -> float:
    """Mean over seeds of PGD minus worst-case accuracy, in points."""
    return float(np.mean([v["PGD"] - v["worst case"] for v in values]))


def radius_label(eps: float) -> str:
    """``'4/255'`` for a radius in pixel units (rounded to the nearest 1/255)."""
    return f"{math.floor(eps * 255 + 0.5)}/255"


def audit_applies(cfg: Profile) -> bool:
    """The audit's networks need benign and adversarial stage 1."""
    return {"benign", "adversarial"} <= set(cfg.modes)


def audited_networks(cfg: Profile, seed: int) -> dict[str, tuple[NetworkId, NetworkId]]:
    """The book's headline networks as ``{label: (network, transfer source)}``: the source is
    the standard-dynamics network whose kernel it uses (for standard adversarial training,
    the final benign network of the same seed)."""
    end, early = float(cfg.stage1_epochs), cfg.sgd_comparison_spawn_epoch
    benign_end = NetworkId(seed, "benign", end)
    networks = {
        "standard adversarial training": NetworkId(seed, "adversarial", end),
        "centered, final adversarial kernel": NetworkId(seed, "adversarial", end, "centered"),
        f"centered, adversarial kernel at t = {early:g}": NetworkId(seed, "adversarial", early,
                                                                  "centered"),
        "centered, final benign kernel": NetworkId(seed, "benign", end, "centered"),
        "adversarial centered, K_0": NetworkId(seed, "benign", 0.0, "centered",
                                               adversarial=True),
        "adversarial centered, final benign kernel": NetworkId(seed, "benign", end, "centered",
                                                               adversarial=True),
        "adversarial centered, final adversarial kernel": NetworkId(
            seed, "adversarial", end, "centered", adversarial=True),
    }
    return {label: (nid, benign_end if nid.stage == 1 else nid.parent())
            for label, nid in networks.items()}


def worst_case_networks(cfg: Profile, seed: int) -> list[NetworkId]:
    """The networks whose robust accuracy the book measures by the worst case: Table 2's
    and the audited ones (the others, Table 1's among them, by PGD)."""
    from ntkbook import tables
    audited = [nid for nid, _ in audited_networks(cfg, seed).values()] \
        if audit_applies(cfg) else []
    return list(dict.fromkeys(tables.table2_networks(cfg, seed) + audited))


def pgd_controls(cfg: Profile, seed: int) -> list[NetworkId]:
    """Networks the claims compare with audited ones under PGD on the audited images (the
    final linearized models and the final benign network), for the grid's audit job."""
    end = float(cfg.stage1_epochs)
    nets = [NetworkId(seed, mode, end, "linearized") for mode in ("benign", "adversarial")
            if mode in cfg.modes]
    return nets + [NetworkId(seed, "benign", end)] if "benign" in cfg.modes else nets


def audit_all(cfg: Profile, store: Store) -> dict[str, list[dict[str, Any]]]:
    """``{label: [audit results per seed]}`` for every audited network (cached pieces)."""
    jobs = [(label, seed) for seed in cfg.seeds for label in audited_networks(cfg, seed)]
    out: dict[str, list[dict[str, Any]]] = {}
    for label, seed in progress(jobs, desc="robustness audit"):
        nid, source = audited_networks(cfg, seed)[label]
        out.setdefault(label, []).append(audit(cfg, store, network(cfg, store, nid),
                                               network(cfg, store, source)))
    return out


def checklist_summary(cfg: Profile, per_seed: Sequence[dict[str, Any]]) -> list[str]:
    """Per check of :func:`checklist`: ``'passes'`` on every seed, else what failed where."""
    checks = [checklist(cfg, results) for results in per_seed]
    return ["passes" if all(seed[i].passed for seed in checks) else
            "**fails**: " + "; ".join(seed[i].observed for seed in checks if not seed[i].passed)
            for i in range(len(checks[0]))]


def masking_flagged(cfg: Profile, per_seed: Sequence[dict[str, Any]]) -> bool:
    """Whether any seed fails any check of the gradient-masking checklist."""
    return any(not check.passed for results in per_seed for check in checklist(cfg, results))
