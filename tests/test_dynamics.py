import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook import dynamics, experiment, models
from ntkbook.dynamics import first_order_terms


@pytest.fixture(scope="module")
def net():
    """A width-4 CNN with non-trivial BatchNorm statistics, its apply_fn, params, inputs."""
    model = models.SmallCNN(num_classes=10, width=4)
    variables = models.init_variables(model, jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (8, 32, 32, 3))
    _, stats = models.train_apply(model, variables["batch_stats"])(variables["params"], x)
    apply_fn = models.eval_apply(model, stats)
    direction = jax.tree_util.tree_map(
        lambda p: jax.random.normal(jax.random.PRNGKey(p.size), p.shape) * (jnp.std(p) + 0.1),
        variables["params"])
    return apply_fn, variables["params"], direction, x


def shifted(params, direction, scale):
    return jax.tree_util.tree_map(lambda p, d: p + scale * d, params, direction)


def test_linearized_equals_the_network_at_the_parent(net):
    apply_fn, params, _, x = net
    # the jvp's primal and the plain forward are separate programs: equal up to rounding
    np.testing.assert_allclose(dynamics.linearize(apply_fn, params)(params, x),
                               apply_fn(params, x), rtol=1e-6, atol=1e-6)


def test_centered_and_centered_standard_are_zero_at_the_parent(net):
    apply_fn, params, _, x = net
    assert np.array_equal(dynamics.centered(apply_fn, params)(params, x), np.zeros((8, 10)))
    assert np.array_equal(dynamics.centered_standard(apply_fn, params)(params, x),
                          np.zeros((8, 10)))


def test_linearized_error_is_second_order(net):
    """|f(θ+sδ) − f_lin(θ+sδ)| shrinks ~4x when s halves."""
    apply_fn, params, direction, x = net
    f_lin = dynamics.linearize(apply_fn, params)
    errors = [float(jnp.abs(apply_fn(shifted(params, direction, s), x)
                            - f_lin(shifted(params, direction, s), x)).max())
              for s in (0.2, 0.1, 0.05)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert errors[0] > 1e-4  # the network is really non-linear at this scale
    assert np.all((ratios > 3.0) & (ratios < 5.0)), (errors, ratios)


def test_first_order_term_matches_a_central_finite_difference(net):
    apply_fn, params, direction, x = net
    h = 1e-3
    _, delta_f = first_order_terms(apply_fn, params, shifted(params, direction, 1.0), x)
    fd = (apply_fn(shifted(params, direction, h), x)
          - apply_fn(shifted(params, direction, -h), x)) / (2 * h)
    assert float(jnp.abs(delta_f - fd).max()) < 1e-2 * float(jnp.abs(fd).max())


def test_centered_is_linear_in_the_parameter_offset(net):
    apply_fn, params, direction, x = net
    f_cen = dynamics.centered(apply_fn, params)
    one = f_cen(shifted(params, direction, 1.0), x)
    three = f_cen(shifted(params, direction, 3.0), x)
    np.testing.assert_allclose(three, 3 * one, rtol=1e-4, atol=1e-5)


def test_unknown_dynamics_is_rejected(net):
    apply_fn, params, _, _ = net
    with pytest.raises(ValueError, match="centered_standard"):
        dynamics.make_dynamics("lazy", apply_fn, params)


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


@pytest.mark.parametrize("dynamics_name", ["centered", "centered_standard"])
def test_stage2_frozen_batchnorm_stays_frozen_and_updating_batchnorm_moves(
        tiny, store, dynamics_name):
    parent = experiment.stage1_variables(tiny, 0, "benign", 1, store)
    frozen = experiment.stage2_variables(tiny, 0, "benign", 1, dynamics_name, store)
    assert leaves_equal(frozen["batch_stats"], parent["batch_stats"])
    assert not leaves_equal(frozen["params"], parent["params"])  # it did train
    updating = experiment.stage2_variables(tiny, 0, "benign", 1, dynamics_name, store,
                                           update_bn=True)
    assert not leaves_equal(updating["batch_stats"], parent["batch_stats"])
