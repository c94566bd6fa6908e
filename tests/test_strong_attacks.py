"""The attacks against exact answers: a linear classifier whose L-inf robust accuracy is known,
and a model whose gradients are masked."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook import attacks

N, C = 64, 10
SHAPE = (N, 32, 32, 3)


@functools.lru_cache(maxsize=None)
def linear_problem():
    """A linear classifier with image-like weights (constant over 8x8 pixel blocks), images
    inside [0.25, 0.75] labelled by its own prediction, and an eps (below 0.25, so every
    eps-ball lies inside [0, 1]) at which about half of them are robust."""
    rng = np.random.default_rng(0)
    blocks = rng.normal(size=(C, 4, 4, 3)).astype(np.float32)
    w = np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2).reshape(C, -1) / 10
    b = rng.normal(size=C).astype(np.float32)
    x = rng.uniform(0.25, 0.75, size=SHAPE).astype(np.float32)
    y = (x.reshape(N, -1) @ w.T + b).argmax(-1)
    eps = float(np.median(critical_eps(w, b, x, y)))
    assert 0 < eps < 0.25
    return w, b, x, y, eps


def critical_eps(w, b, x, y):
    """Per image, the smallest eps that flips it: min_j margin_j / ||w_y - w_j||_1."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    w, b = w.astype(np.float64), b.astype(np.float64)
    out = []
    for image, label in zip(flat, y, strict=True):
        others = [j for j in range(C) if j != label]
        diff = w[label] - w[others]
        out.append(np.min((diff @ image + b[label] - b[others]) / np.abs(diff).sum(-1)))
    return np.array(out)


def exact_robust_accuracy(w, b, x, y, eps) -> float:
    """Robust iff for all j != y: (w_y - w_j).x + b_y - b_j > eps ||w_y - w_j||_1."""
    return 100.0 * float(np.mean(critical_eps(w, b, x, y) > eps))


def linear_logits(w, b, masked=False):
    w, b = jnp.asarray(w), jnp.asarray(b)

    def logits(z):
        if masked:  # the gradient is zero everywhere: white-box attacks see nothing
            z = jax.lax.stop_gradient(z)
        return z.reshape(len(z), -1) @ w.T + b

    return logits


def accuracy(logits_fn, x_adv, y) -> float:
    return 100.0 * float(np.mean(np.asarray(logits_fn(x_adv).argmax(-1)) == y))


ATTACKS = {
    "pgd": lambda f, x, y, eps, key: attacks.pgd_linf(f, x, y, eps=eps, steps=20,
                                                      step_size=eps / 4, key=key),
    "pgd_restarts": lambda f, x, y, eps, key: attacks.pgd_restarts(
        f, x, y, eps=eps, steps=10, step_size=eps / 4, key=key, restarts=3),
    "apgd_ce": lambda f, x, y, eps, key: attacks.apgd_linf(f, x, y, eps=eps, steps=30, key=key),
    "apgd_dlr": lambda f, x, y, eps, key: attacks.apgd_linf(f, x, y, eps=eps, steps=30, key=key,
                                                            loss="dlr"),
    "apgd_t": lambda f, x, y, eps, key: attacks.apgd_targeted_linf(f, x, y, eps=eps, steps=30,
                                                                   key=key, targets=9),
    "square": lambda f, x, y, eps, key: attacks.square_linf(f, x, y, eps=eps, queries=300,
                                                            key=key),
}


@functools.lru_cache(maxsize=None)
def attacked(name: str, masked: bool = False) -> np.ndarray:
    w, b, x, y, eps = linear_problem()
    fn = jax.jit(lambda xx, yy, key: ATTACKS[name](linear_logits(w, b, masked), xx, yy, eps,
                                                   key))
    return np.asarray(fn(jnp.asarray(x), jnp.asarray(y), jax.random.PRNGKey(0)))


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_stays_in_the_ball_and_the_image_range(name):
    _, _, x, _, eps = linear_problem()
    x_adv = attacked(name)
    assert np.abs(x_adv - x).max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv - x).max() > eps / 2  # it did move


@pytest.mark.parametrize("name", ATTACKS)
def test_no_attack_reports_less_than_the_exact_robust_accuracy(name):
    w, b, x, y, eps = linear_problem()
    exact = exact_robust_accuracy(w, b, x, y, eps)
    assert 20 < exact < 80  # the problem is not trivial either way
    assert accuracy(linear_logits(w, b), attacked(name), y) >= exact


def test_targeted_apgd_reaches_the_exact_robust_accuracy():
    w, b, x, y, eps = linear_problem()
    exact = exact_robust_accuracy(w, b, x, y, eps)
    assert accuracy(linear_logits(w, b), attacked("apgd_t"), y) == exact


def test_margin_losses_match_their_definitions():
    logits = jnp.array([[3.0, 1.0, 2.0, 0.0, -1.0], [0.0, 5.0, 1.0, 4.0, 2.0]])
    y = jnp.array([0, 2])
    np.testing.assert_allclose(attacks.margin(logits, y), [3 - 2, 1 - 5])
    # DLR: -(z_y - max_other) / (z_pi1 - z_pi3)
    np.testing.assert_allclose(attacks.dlr_loss(logits, y), [-(1) / (3 - 1), 4 / (5 - 2)],
                               rtol=1e-6)
    # targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    np.testing.assert_allclose(attacks.dlr_targeted_loss(logits, y, jnp.array([2, 3])),
                               [-(3 - 2) / (3 - (1 + 0) / 2), -(1 - 4) / (5 - (2 + 1) / 2)],
                               rtol=1e-6)


def test_apgd_checkpoints_follow_the_paper():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 of 100 iterations
    assert attacks.apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_square_schedule_halves_p_at_the_rescaled_iterations():
    p = [float(attacks.square_schedule(jnp.int32(i), 10_000)) for i in (0, 10, 11, 51, 9000)]
    assert p == pytest.approx([0.8, 0.8, 0.4, 0.2, 0.8 / 512])
    assert float(attacks.square_schedule(jnp.int32(2), 1000)) == pytest.approx(0.4)


def test_masked_gradients_defeat_white_box_attacks_but_not_square_or_transfer():
    w, b, x, y, eps = linear_problem()
    exact = exact_robust_accuracy(w, b, x, y, eps)
    masked = linear_logits(w, b, masked=True)
    white_box = min(accuracy(masked, attacked(name, masked=True), y)
                    for name in ("pgd", "apgd_ce", "apgd_t"))
    square = jax.jit(lambda xx, yy, key: attacks.square_linf(masked, xx, yy, eps=eps,
                                                             queries=5000, key=key))
    black_box = accuracy(masked, square(jnp.asarray(x), jnp.asarray(y), jax.random.PRNGKey(0)),
                         y)
    transfer = accuracy(masked, attacked("apgd_t"), y)  # examples of the unmasked twin
    assert white_box > exact + 40  # the gradient is zero: white-box attacks see nothing
    assert black_box < white_box - 20  # queries alone find examples
    assert transfer == exact
