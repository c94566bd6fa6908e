"""ntkbook's programs compile with cheaper CPU options and still give XLA's default results."""

import jax
import jax.numpy as jnp
import numpy as np

from ntkbook import compilation, models
from ntkbook.attacks import pgd_linf
from ntkbook.train import SGD, AttackSettings, forward_fn, init_state, make_train_step


def _identical(a, b) -> bool:
    return jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a, b))


def test_cpu_programs_use_the_faster_back_end():
    assert jax.default_backend() != "cpu" or compilation.compiler_options() == {
        "xla_backend_optimization_level": 1}


def test_init_attack_and_train_step_match_default_compilation():
    model = models.build_model("small_cnn", 10, 8)
    key = jax.random.PRNGKey(0)
    eager = model.init(key, jnp.zeros((1, 32, 32, 3)), train=False)  # Flax, op by op
    variables = models.init_variables(model, key)
    assert _identical(variables, {k: eager[k] for k in ("params", "batch_stats")})

    variables = {**variables, "params_t": jax.tree_util.tree_map(lambda p: p * 0.9,
                                                                 variables["params"])}
    x = jax.random.uniform(jax.random.PRNGKey(1), (16, 32, 32, 3))
    y = jnp.arange(16) % 10
    forward = forward_fn(model, "centered")

    def attack(v, images, labels, k):
        return pgd_linf(lambda z: forward(v, z, False)[0], images, labels, eps=4 / 255,
                        steps=3, step_size=2 / 255, key=k)

    assert _identical(compilation.jit(attack)(variables, x, y, key),
                      jax.jit(attack)(variables, x, y, key))
    step = make_train_step(forward_fn(model, "linearized"), SGD(0.01, 0.9),
                           attack=AttackSettings(4 / 255, 2, 2 / 255), clean_first=True)
    state = init_state(variables, SGD(0.01, 0.9))
    assert _identical(compilation.jit(step)(state, x, y, key), jax.jit(step)(state, x, y, key))
