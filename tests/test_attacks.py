import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook import experiment, models
from ntkbook.attacks import pgd_linf
from ntkbook.evaluate import accuracy, evaluate
from ntkbook.train import AttackSettings, forward_fn

EPS = 8 / 255


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CNN trained benignly for 8 epochs, and its training images."""
    from tests.conftest import TINY
    from ntkbook import config
    from ntkbook.store import Store
    cfg = config.load_profile("smoke", **{**TINY, "stage1_epochs": 8, "spawn_epochs": [0]})
    store = Store(tmp_path_factory.mktemp("store"))
    variables = experiment.stage1_variables(cfg, 0, "benign", 8, store)
    split = experiment.train_split(cfg)
    return cfg, variables, split


def test_pgd_stays_in_the_ball_and_the_image_range(trained):
    cfg, variables, split = trained
    model = experiment.model_for(cfg)
    apply_fn = models.eval_apply(model, variables["batch_stats"])
    x, y = jnp.asarray(split.images[:40]), jnp.asarray(split.labels[:40])
    x_adv = pgd_linf(lambda z: apply_fn(variables["params"], z), x, y, eps=EPS, steps=5,
                     step_size=EPS / 2, key=jax.random.PRNGKey(0))
    assert float(jnp.abs(x_adv - x).max()) <= EPS + 1e-7
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float(jnp.abs(x_adv - x).max()) > EPS / 2  # it did move


def test_pgd_lowers_the_accuracy_of_a_trained_model(trained):
    cfg, variables, split = trained
    masks = evaluate(forward_fn(experiment.model_for(cfg)), variables, split.images,
                     split.labels, AttackSettings(EPS, 10, EPS / 4), batch_size=50)
    result = {k: accuracy(v) for k, v in masks.items()}
    assert result["clean"] > 20.0  # above chance: the model learned something
    assert result["robust"] < result["clean"] / 2


def test_zero_steps_without_random_start_returns_the_input():
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 32, 32, 3))
    x_adv = pgd_linf(lambda z: z.reshape(4, -1)[:, :10], x, jnp.zeros(4, jnp.int32), eps=EPS,
                     steps=0, step_size=0.01, key=jax.random.PRNGKey(1), random_start=False)
    assert np.array_equal(x_adv, x)


def test_pgd_follows_the_gradient_of_the_function_it_is_given():
    """On a linear model the one-step attack is exactly x - eps * sign(w_y - w_other)."""
    w = jax.random.normal(jax.random.PRNGKey(0), (2, 3072))
    x = jnp.full((1, 32, 32, 3), 0.5)
    logits_fn = lambda z: z.reshape(1, -1) @ w.T  # noqa: E731
    x_adv = pgd_linf(logits_fn, x, jnp.array([0]), eps=EPS, steps=1, step_size=EPS,
                     key=jax.random.PRNGKey(1), random_start=False)
    expected = x - EPS * jnp.sign(w[0] - w[1]).reshape(1, 32, 32, 3)
    np.testing.assert_allclose(x_adv, expected, atol=1e-7)
