"""L-inf attacks against any ``logits_fn(x) -> (N, C)``: PGD, APGD, targeted APGD, Square.

Each attack differentiates (or, for Square, only queries) whatever function it is given:
standard, linearized or centered dynamics; callers pass BatchNorm in eval mode. Every attack
returns images inside the eps-ball around ``x`` and inside [0, 1]. They are pure JAX
functions of their inputs and key, so they can be jitted and vmapped.

- :func:`pgd_linf`: Madry et al.'s PGD on the cross-entropy, with a uniform random start.
- :func:`pgd_restarts`: PGD from several random starts; per image the first example that is
  misclassified.
- :func:`apgd_linf`: APGD of Croce & Hein (ICML 2020): step size 2 eps, halved at checkpoints
  where the loss rose in fewer than 75 % of the steps since the last one, or where neither the
  step size was halved nor the best loss improved; each halving restarts from the best point;
  momentum 0.75; cross-entropy or DLR loss.
- :func:`apgd_targeted_linf`: APGD on the targeted DLR loss against each of the top classes.
- :func:`square_linf`: the Square attack of Andriushchenko et al. (ECCV 2020): random square
  updates of the perturbation's vertices, kept when the margin drops, no gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

LogitsFn = Callable[[jax.Array], jax.Array]

UNROLL_MAX = 25  # loops up to this long are unrolled: 1.7x faster PGD on XLA:CPU, same result
APGD_MOMENTUM = 0.75
APGD_RHO = 0.75  # a checkpoint halves the step unless the loss rose in >= 75 % of the steps
SQUARE_P_INIT = 0.8  # AutoAttack's initial fraction of pixels a square covers (CIFAR)


def repeat(count: int, body: Callable, init):
    """``fori_loop(0, count, body, init)``, unrolled into straight-line code when ``count`` is
    at most :data:`UNROLL_MAX` (XLA:CPU runs convolutions inside a loop body much slower)."""
    if count > UNROLL_MAX:
        return jax.lax.fori_loop(0, count, body, init)
    for i in range(count):
        init = body(i, init)
    return init


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def project(x_adv: jax.Array, x: jax.Array, eps: float) -> jax.Array:
    """Nearest point of the eps-ball around ``x`` intersected with [0, 1]."""
    return jnp.clip(jnp.clip(x_adv, x - eps, x + eps), 0.0, 1.0)


def _take(values: jax.Array, index: jax.Array) -> jax.Array:
    """``values[i, index[i]]`` for every row."""
    return jnp.take_along_axis(values, index[:, None], axis=1)[:, 0]


def margin(logits: jax.Array, y: jax.Array) -> jax.Array:
    """``z_y - max_{j != y} z_j`` per image: negative iff the image is misclassified."""
    others = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return _take(logits, y) - others.max(-1)


def dlr_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Croce & Hein's difference of logits ratio, per image (to maximise):
    ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)``, with ``z_pi`` the sorted logits."""
    ordered = jnp.sort(logits, axis=-1)
    return -margin(logits, y) / (ordered[:, -1] - ordered[:, -3] + 1e-12)


def dlr_targeted_loss(logits: jax.Array, y: jax.Array, target: jax.Array) -> jax.Array:
    """Targeted DLR, per image (to maximise): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``."""
    ordered = jnp.sort(logits, axis=-1)
    scale = ordered[:, -1] - 0.5 * (ordered[:, -3] + ordered[:, -4]) + 1e-12
    return -(_take(logits, y) - _take(logits, target)) / scale


def _per_image_ce(logits: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def pgd_linf(logits_fn: LogitsFn, x: jax.Array, y: jax.Array, *, eps: float, steps: int,
             step_size: float, key: jax.Array, random_start: bool = True) -> jax.Array:
    """``steps`` signed-gradient ascent steps on the cross-entropy, projected each step."""
    if random_start:
        x_adv = project(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps), x, eps)
    else:
        x_adv = x
    loss_grad = jax.grad(lambda z: cross_entropy(logits_fn(z), y))

    def step(_: int, z: jax.Array) -> jax.Array:
        return project(z + step_size * jnp.sign(loss_grad(z)), x, eps)

    return repeat(steps, step, x_adv)


def _misclassified(logits_fn: LogitsFn, x: jax.Array, y: jax.Array) -> jax.Array:
    return logits_fn(x).argmax(-1) != y


def _keep_first_success(runs: Callable[[int], jax.Array], count: int, logits_fn: LogitsFn,
                        x: jax.Array, y: jax.Array) -> jax.Array:
    """Run ``runs(i)`` for i < count; per image keep the first misclassified result, else the
    last one."""
    def body(i, carry):
        best, found = carry
        candidate = runs(i)
        fooled = _misclassified(logits_fn, candidate, y)
        take = fooled & ~found | (~found & (i == count - 1))
        best = jnp.where(_rows(take, x), candidate, best)
        return best, found | fooled

    best, _ = repeat(count, body, (x, jnp.zeros(len(x), bool)))
    return best


def _rows(mask: jax.Array, like: jax.Array) -> jax.Array:
    return mask.reshape((-1,) + (1,) * (like.ndim - 1))


def pgd_restarts(logits_fn: LogitsFn, x: jax.Array, y: jax.Array, *, eps: float, steps: int,
                 step_size: float, key: jax.Array, restarts: int) -> jax.Array:
    """PGD from ``restarts`` random starts; per image the first misclassified example."""
    return _keep_first_success(
        lambda i: pgd_linf(logits_fn, x, y, eps=eps, steps=steps, step_size=step_size,
                           key=jax.random.fold_in(key, i)),
        restarts, logits_fn, x, y)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations after which APGD checks its step size: w_j = ceil(p_j * steps) with
    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = {math.ceil(round(q * steps, 6)) for q in p[1:]}  # round: 0.41 * 100 is not 41.0...1
    return sorted(m for m in marks if 0 < m < steps)


def _random_start(key: jax.Array, x: jax.Array, eps: float) -> jax.Array:
    """A random point of the eps-ball scaled so its largest coordinate is eps (as AutoAttack)."""
    t = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0)
    largest = jnp.abs(t).reshape(len(x), -1).max(-1)
    return jnp.clip(x + eps * t / (_rows(largest, x) + 1e-12), 0.0, 1.0)


def apgd_linf(logits_fn: LogitsFn, x: jax.Array, y: jax.Array, *, eps: float, steps: int,
              key: jax.Array, loss: str = "ce", target: jax.Array | None = None) -> jax.Array:
    """APGD (Croce & Hein 2020) maximising ``loss`` ('ce' or 'dlr'; with ``target``, the
    targeted DLR loss). Per image: the first misclassified iterate, else the best-loss one."""
    if target is not None:
        def losses(logits):
            return dlr_targeted_loss(logits, y, target)
    elif loss == "dlr":
        def losses(logits):
            return dlr_loss(logits, y)
    elif loss == "ce":
        def losses(logits):
            return _per_image_ce(logits, y)
    else:
        raise ValueError(f"APGD loss must be 'ce' or 'dlr', got {loss!r}")

    def evaluate(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        (_, (value, logits)), grad = jax.value_and_grad(
            lambda u: _summed(losses, logits_fn, u), has_aux=True)(z)
        return value, grad, logits.argmax(-1) != y

    checkpoints = apgd_checkpoints(steps)
    is_check = jnp.zeros(max(steps, 1), bool)  # step i makes iterate i + 1
    if checkpoints:
        is_check = is_check.at[jnp.asarray(checkpoints) - 1].set(True)
    periods = jnp.diff(jnp.asarray([0] + checkpoints + [steps]))
    period_of = jnp.repeat(periods, periods, total_repeat_length=max(steps, 1))
    rows = lambda m: _rows(m, x)  # noqa: E731

    x0 = _random_start(key, x, eps)
    value0, grad0, fooled0 = evaluate(x0)
    n = len(x)
    state = dict(x=x0, x_prev=x0, grad=grad0, value=value0, eta=jnp.full(n, 2.0 * eps),
                 x_best=x0, grad_best=grad0, best=value0, adv=x0, found=fooled0,
                 rises=jnp.zeros(n), best_at_check=value0, halved_at_check=jnp.ones(n, bool))

    def step(i: int, s: dict) -> dict:
        a = jnp.where(i == 0, 1.0, APGD_MOMENTUM)
        z = project(s["x"] + rows(s["eta"]) * jnp.sign(s["grad"]), x, eps)
        x_new = project(s["x"] + a * (z - s["x"]) + (1 - a) * (s["x"] - s["x_prev"]), x, eps)
        value, grad, fooled = evaluate(x_new)
        new = dict(s, x=x_new, x_prev=s["x"], grad=grad, value=value,
                   rises=s["rises"] + (value > s["value"]))
        new["adv"] = jnp.where(rows(fooled & ~s["found"]), x_new, s["adv"])
        new["found"] = s["found"] | fooled
        better = value > s["best"]
        new["x_best"] = jnp.where(rows(better), x_new, s["x_best"])
        new["grad_best"] = jnp.where(rows(better), grad, s["grad_best"])
        new["best"] = jnp.where(better, value, s["best"])
        return jax.lax.cond(is_check[i], _halve_at_checkpoint, lambda t, _: t, new, period_of[i])

    state = repeat(steps, step, state)
    return jnp.where(rows(state["found"]), state["adv"], state["x_best"])


def _summed(losses: Callable, logits_fn: LogitsFn, z: jax.Array):
    logits = logits_fn(z)
    values = losses(logits)
    return values.sum(), (values, logits)


def _halve_at_checkpoint(s: dict, period: jax.Array) -> dict:
    """APGD's two conditions; where either holds: halve the step, restart from the best."""
    oscillating = s["rises"] < APGD_RHO * period
    stalled = ~s["halved_at_check"] & (s["best"] <= s["best_at_check"])
    halve = oscillating | stalled
    rows = lambda m: _rows(m, s["x"])  # noqa: E731
    return dict(s, eta=jnp.where(halve, s["eta"] / 2, s["eta"]),
                x=jnp.where(rows(halve), s["x_best"], s["x"]),
                x_prev=jnp.where(rows(halve), s["x_best"], s["x_prev"]),
                grad=jnp.where(rows(halve), s["grad_best"], s["grad"]),
                rises=jnp.zeros_like(s["rises"]), best_at_check=s["best"],
                halved_at_check=halve)


def ranked_targets(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Per image, the classes other than ``y`` by decreasing logit: APGD-T's targets."""
    others = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return jnp.argsort(-others, axis=-1)


def keep_most_damaging(best: jax.Array, best_margin: jax.Array, candidate: jax.Array,
                       candidate_margin: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per image, keep the first misclassified example (negative margin), else the one with
    the lowest margin."""
    take = (best_margin >= 0) & (candidate_margin < best_margin)
    return (jnp.where(_rows(take, best), candidate, best),
            jnp.where(take, candidate_margin, best_margin))


def apgd_targeted_linf(logits_fn: LogitsFn, x: jax.Array, y: jax.Array, *, eps: float,
                       steps: int, key: jax.Array, targets: int = 9) -> jax.Array:
    """Targeted DLR APGD against each of the ``targets`` classes with the highest clean
    logits other than ``y``; per image the first example that is misclassified, else the
    one with the lowest margin."""
    clean = logits_fn(x)
    ranked = ranked_targets(clean, y)

    def body(k, carry):
        candidate = apgd_linf(logits_fn, x, y, eps=eps, steps=steps,
                              key=jax.random.fold_in(key, k), target=ranked[:, k])
        return keep_most_damaging(*carry, candidate, margin(logits_fn(candidate), y))

    best, _ = jax.lax.fori_loop(0, min(targets, clean.shape[-1] - 1), body,
                                (x, margin(clean, y)))
    return best


def square_schedule(iteration: jax.Array, queries: int) -> jax.Array:
    """Square's fraction p of pixels to change: p_init halved at 10, 50, 200, 500, 1000, 2000,
    4000, 6000 and 8000 of 10,000 iterations, rescaled to ``queries``."""
    scaled = (iteration * 10_000) // max(queries, 1)
    halvings = sum((scaled > b).astype(jnp.int32)
                   for b in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
    return SQUARE_P_INIT / 2.0 ** halvings


def square_linf(logits_fn: LogitsFn, x: jax.Array, y: jax.Array, *, eps: float, queries: int,
                key: jax.Array) -> jax.Array:
    """The Square attack: ``queries`` model evaluations at most, no gradients.

    Starts from vertical stripes of +-eps; each iteration sets one random square per image
    (side from :func:`square_schedule`) to +-eps per channel, and keeps it where the margin
    ``z_y - max_{j != y} z_j`` drops; images already misclassified stop changing.
    """
    n, h, w, c = x.shape
    key, stripes_key = jax.random.split(key)
    stripes = jax.random.rademacher(stripes_key, (n, 1, w, c), x.dtype)
    best = project(x + eps * stripes, x, eps)
    best_margin = margin(logits_fn(best), y)
    rows_, cols_ = jnp.arange(h)[None, :, None, None], jnp.arange(w)[None, None, :, None]

    def cond(carry):
        i, _, m, _ = carry
        return (i < queries - 1) & jnp.any(m > 0)

    def body(carry):
        i, best, best_margin, key = carry
        key, k_pos, k_sign = jax.random.split(key, 3)
        p = square_schedule(i, queries)
        side = jnp.clip(jnp.round(jnp.sqrt(p * h * w)), 1, h).astype(jnp.int32)
        corner = jax.random.randint(k_pos, (2, n), 0, jnp.maximum(h - side + 1, 1))
        inside = ((rows_ >= corner[0][:, None, None, None])
                  & (rows_ < corner[0][:, None, None, None] + side)
                  & (cols_ >= corner[1][:, None, None, None])
                  & (cols_ < corner[1][:, None, None, None] + side))
        signs = jax.random.rademacher(k_sign, (n, 1, 1, c), x.dtype)
        candidate = project(jnp.where(inside, x + eps * signs, best), x, eps)
        m = margin(logits_fn(candidate), y)
        keep = (best_margin > 0) & (m < best_margin)
        return (i + 1, jnp.where(_rows(keep, x), candidate, best),
                jnp.where(keep, m, best_margin), key)

    _, best, _, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), best, best_margin, key))
    return best
