"""Kernels of trained networks: the kernel subset and the cache."""

import numpy as np
import pytest

from ntkbook import config, experiment, kernel_study
from tests.conftest import TINY


def test_kernel_images_are_a_balanced_seeded_subset_of_the_training_subset(tiny):
    images = kernel_study.kernel_images(tiny)
    assert np.bincount(images.labels, minlength=10).tolist() == [tiny.n_kernel // 10] * 10
    train = experiment.train_split(tiny)
    flat = train.images.reshape(len(train.images), -1)
    for image in images.images.reshape(len(images.images), -1):
        assert np.any(np.all(flat == image, axis=1))
    assert np.array_equal(kernel_study.kernel_images(tiny).images, images.images)


def test_kernels_are_cached_by_checkpoint_and_kind(tiny, store):
    network = experiment.stage1_network(tiny, 0, "benign", 1, store)
    per_class = kernel_study.study_kernel(tiny, store, network)
    assert per_class.shape == (10, tiny.n_kernel, tiny.n_kernel)
    entries = set((store.root / "kernel").iterdir())
    assert len(entries) == 1
    calls = []
    cached = experiment.Network(network.checkpoint, network.dynamics,
                                lambda: calls.append(1) or network.load(), network.label)
    assert np.array_equal(kernel_study.study_kernel(tiny, store, cached), per_class)
    assert calls == []  # served from the store, checkpoint untouched
    np.testing.assert_allclose(kernel_study.logit_kernel(tiny, store, network, 5), per_class[5])
    trace = kernel_study.network_kernel(tiny, store, network, "trace")
    np.testing.assert_allclose(trace, per_class.mean(0), rtol=1e-5, atol=1e-6)
    later = experiment.stage1_network(tiny, 0, "benign", 2, store)
    assert not np.allclose(kernel_study.trace_kernel(tiny, store, later), trace)
    assert len(set((store.root / "kernel").iterdir())) == 3


def test_kernel_evolution_statistics_have_the_figure_shapes(tiny, store):
    epochs = list(tiny.checkpoint_epochs)
    stats = kernel_study.kernel_evolution(tiny, store, 0, "benign", epochs)
    assert stats["velocity"].shape == (len(epochs) - 1,)
    # S(K, K) is 1 - sum(K*K) / (norm(K) norm(K)): two routines, equal up to rounding
    assert stats["distance_to_final"][-1] == pytest.approx(0.0, abs=1e-12)
    assert np.all(stats["velocity"] > 0)
    assert np.all((stats["mean_specialization"] >= 0) & (stats["mean_specialization"] <= 10))


def test_cifar100_keeps_only_the_trace_kernel_and_no_specialization(store):
    hundred = config.load_profile("smoke", **{**TINY, "dataset": "cifar100", "n_train": 200,
                                              "n_kernel": 100, "n_test": 100, "audit_images": 100,
                                              "eval_batch_size": 100, "stage1_epochs": 1,
                                              "modes": ["benign"],
                                              "fractional_epochs": [], "spawn_epochs": [0],
                                              "sgd_comparison_spawn_epoch": 1})
    network = experiment.stage1_network(hundred, 0, "benign", 1, store)
    assert kernel_study.study_kernel(hundred, store, network).shape == (100, 100)
    stats = kernel_study.kernel_evolution(hundred, store, 0, "benign", [0.0, 1.0])
    assert np.all(np.isnan(stats["mean_specialization"]))


def test_eigen_images_are_cached_with_the_profile_shapes(store):
    cfg = config.load_profile("smoke", **{**TINY, "eigen_steps": 5, "eigen_vectors": 3})
    network = experiment.stage1_network(cfg, 0, "benign", 1, store)
    out = kernel_study.eigen_images(cfg, store, network)
    assert out["maximised"].shape == out["minimised"].shape == (3, 32, 32, 3)
    assert np.all(np.diff(out["eigenvalues"]) <= 0)
    assert 0 <= out["maximised"].min() and out["maximised"].max() <= 1
    untouched = experiment.Network(network.checkpoint, network.dynamics,
                                   lambda: pytest.fail("cache miss"), network.label)
    again = kernel_study.eigen_images(cfg, store, untouched)
    assert np.array_equal(again["maximised"], out["maximised"])
