"""Section 7: adversarial stage 2 attacks the centered model, not the network."""

import jax
import numpy as np

from ntkbook import experiment, models
from ntkbook.attacks import pgd_linf
from ntkbook.train import (SGD, AttackSettings, TrainState, forward_fn, init_state,
                           jitted_step, make_train_step)


def test_adversarial_stage2_step_attacks_the_centered_logits(tiny, store):
    parent = experiment.stage1_variables(tiny, 0, "benign", 1, store)
    model = experiment.model_for(tiny)
    moved = jax.tree_util.tree_map(lambda p: p * 1.1, parent["params"])  # theta != theta_t
    variables = {**parent, "params": moved, "params_t": parent["params"]}
    split = experiment.train_split(tiny)
    x, y = split.images[:16], split.labels[:16]
    key = jax.random.PRNGKey(7)
    attack = AttackSettings(8 / 255, 3, 4 / 255)
    optimiser = SGD(0.1, 0.0)
    centered = forward_fn(model, "centered")
    step = jitted_step(make_train_step(centered, optimiser, attack=attack))
    after = step(init_state(variables, optimiser), x, y, key).state

    def step_on(examples):  # one plain SGD step of the centered model on given inputs
        return jitted_step(make_train_step(centered, optimiser))(
            init_state(variables, optimiser), examples, y, key).state

    def attack_of(logits_fn):
        return pgd_linf(logits_fn, x, y, eps=attack.eps, steps=attack.steps,
                        step_size=attack.step_size, key=key)

    on_centered = step_on(attack_of(lambda z: centered(variables, z, False)[0]))
    standard = models.eval_apply(model, parent["batch_stats"])
    on_standard = step_on(attack_of(lambda z: standard(moved, z)))
    leaves = lambda state: jax.tree_util.tree_leaves(state.variables["params"])  # noqa: E731
    for a, b in zip(leaves(after), leaves(on_centered), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a, b, rtol=1e-5, atol=1e-7)
               for a, b in zip(leaves(after), leaves(on_standard), strict=True))
    assert isinstance(after, TrainState)
