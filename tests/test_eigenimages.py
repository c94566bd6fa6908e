"""Section 8: eigenvector directions without the Jacobian, and the image optimisation."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook import eigenimages, kernels, models


def logit_net(dtype=jnp.float32):
    """The smoke model (width 8) at initialisation; its logit 5 ("dog") as a function of
    (params, x, context) with the BatchNorm statistics as context."""
    model = models.SmallCNN(num_classes=10, width=8)
    variables = models.init_variables(model, jax.random.PRNGKey(3))
    cast = lambda tree: jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), tree)  # noqa: E731
    params, stats = cast(variables["params"]), cast(variables["batch_stats"])

    def logits(p, x, batch_stats):
        return model.apply({"params": p, "batch_stats": batch_stats}, x, train=False)

    return eigenimages.one_logit(logits, 5), logits, params, stats


def test_direction_from_the_gradient_trick_equals_jacobian_transpose_u():
    with jax.enable_x64(True):
        logit_fn, _, params, stats = logit_net(jnp.float64)
        x = jax.random.uniform(jax.random.PRNGKey(0), (5, 32, 32, 3), jnp.float64)
        u = np.random.default_rng(0).normal(size=(5, 2))
        flat_params, unravel = jax.flatten_util.ravel_pytree(params)
        jacobian = jax.jacrev(lambda flat: logit_fn(unravel(flat), x, stats))(flat_params)
        stacked = eigenimages.parameter_directions(logit_fn, params, stats, x, u)
        for i in range(2):
            direction, _ = jax.flatten_util.ravel_pytree(
                jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], stacked))
            np.testing.assert_allclose(direction, jacobian.T @ u[:, i], rtol=1e-10, atol=1e-12)


def test_top_eigenvectors_are_sorted_unit_eigenvectors():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 6))
    kernel = a @ a.T
    values, vectors = eigenimages.top_eigenvectors(kernel, 3)
    # eigh and eigvalsh are different LAPACK routines: equal up to rounding, not bit for bit
    assert np.all(np.diff(values) <= 0)
    assert values[0] == pytest.approx(np.linalg.eigvalsh(kernel).max(), rel=1e-12)
    np.testing.assert_allclose(kernel @ vectors, vectors * values, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=0), 1.0)


def test_optimisation_raises_and_lowers_the_cosine_and_stays_in_range():
    logit_fn, logits, params, stats = logit_net()
    x = jax.random.uniform(jax.random.PRNGKey(2), (8, 32, 32, 3))
    kernel = kernels.empirical_ntk(logits, params, x, kind=("logit", 5), context=stats)
    _, vectors = eigenimages.top_eigenvectors(kernel, 2)
    directions = eigenimages.parameter_directions(logit_fn, params, stats, x, vectors)
    grey, start = eigenimages.optimise_images(logit_fn, params, stats, directions, steps=0,
                                              step_size=0.01, maximise=True)
    assert np.all(grey == 0.5)
    for maximise in (True, False):
        images, cosines = eigenimages.optimise_images(logit_fn, params, stats, directions,
                                                      steps=20, step_size=0.005,
                                                      maximise=maximise)
        assert images.min() >= 0 and images.max() <= 1 and not np.all(images == 0.5)
        moved = cosines - start
        assert np.all(moved > 0) if maximise else np.all(moved < 0), (maximise, start, cosines)
