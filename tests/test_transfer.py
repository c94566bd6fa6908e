"""Sections 4 and 5: transferability tau and the relative magnitude of linearized dynamics."""

import dataclasses

import numpy as np
import pytest

from ntkbook import config, experiment
from ntkbook.evaluate import accuracy, evaluate, evaluate_transfer, tau
from ntkbook.train import forward_fn
from tests.conftest import TINY


def test_tau_of_the_target_against_itself_is_exactly_one(tiny, store):
    target = experiment.stage1_network(tiny, 0, "benign", tiny.stage1_epochs, store)
    own = experiment.evaluation(tiny, store, target)
    assert own["robust"] < own["clean"]  # else tau is undefined and the test proves nothing
    assert experiment.transferability(tiny, store, target, target) == 1.0


def test_tau_of_unperturbed_inputs_is_zero_and_of_real_examples_is_not(tiny, store):
    target = experiment.stage1_network(tiny, 0, "benign", tiny.stage1_epochs, store)
    forward = forward_fn(experiment.model_for(tiny), "standard")
    split = experiment.test_split(tiny)
    attack = experiment.eval_attack(tiny)
    own = {k: accuracy(v) for k, v in evaluate(forward, target.load(), split.images,
                                               split.labels, attack,
                                               batch_size=tiny.eval_batch_size).items()}
    args = (forward, target.load(), forward, target.load(), split.images, split.labels)
    unperturbed = accuracy(evaluate_transfer(*args, dataclasses.replace(attack, eps=0.0),
                                             batch_size=tiny.eval_batch_size))
    assert tau(own["clean"], unperturbed, own["robust"]) == 0.0
    other_start = accuracy(evaluate_transfer(*args, attack, batch_size=tiny.eval_batch_size,
                                             seed=1))
    assert tau(own["clean"], other_start, own["robust"]) > 0.0  # same attack, other start


def test_evaluations_are_kept_per_image_in_the_test_subset_order(tiny, store):
    target = experiment.stage1_network(tiny, 0, "benign", tiny.stage1_epochs, store)
    masks = experiment.evaluation_masks(tiny, store, target)
    split = experiment.test_split(tiny)
    forward = forward_fn(experiment.model_for(tiny), "standard")
    predicted = forward(target.load(), split.images, False)[0].argmax(-1)
    assert masks["clean"].dtype == bool and masks["clean"].shape == (len(split.labels),)
    np.testing.assert_array_equal(masks["clean"], np.asarray(predicted) == split.labels)
    assert experiment.evaluation(tiny, store, target)["clean"] == accuracy(masks["clean"])


def test_tau_is_undefined_when_the_target_resists_its_own_examples():
    assert np.isnan(tau(50.0, 40.0, 50.0))
    assert tau(80.0, 60.0, 40.0) == pytest.approx(0.5)


def test_relative_magnitude_is_zero_at_the_start_of_stage_2_and_grows(tiny, store):
    untrained = config.load_profile("smoke", **{**TINY, "stage2_epochs": 0})
    start = experiment.stage2_network(untrained, 0, "benign", 1, "linearized", store)
    assert experiment.relative_magnitude(untrained, store, start) == 0.0
    trained = experiment.stage2_network(tiny, 0, "benign", 1, "linearized", store)
    assert experiment.relative_magnitude(tiny, store, trained) > 1e-4


def test_a_transfer_also_evaluates_its_source_from_the_same_examples(tiny, store, tmp_path):
    """One PGD pass serves the transfer and the source's own evaluation: the evaluation it
    saves is byte for byte the one computed on its own."""
    from ntkbook.store import Store, read_entry
    source = experiment.stage1_network(tiny, 0, "benign", 1, store)
    target = experiment.stage1_network(tiny, 0, "benign", tiny.stage1_epochs, store)
    spec = experiment._evaluation_spec(tiny, source)
    assert not store.exists(spec)
    experiment.transfer_accuracy(tiny, store, source, target)
    assert store.exists(spec)
    alone = Store(tmp_path / "alone")
    expected = experiment.evaluation_masks(tiny, alone, source)
    for kind, mask in experiment.evaluation_masks(tiny, store, source).items():
        np.testing.assert_array_equal(mask, expected[kind])
    assert read_entry(store.path(spec))[1] == read_entry(alone.path(spec))[1]
