import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkbook import kernels, models


def tiny_net(width: int, dtype, n: int = 6):
    """A SmallCNN with trained-looking BatchNorm statistics, cast to ``dtype``."""
    model = models.SmallCNN(num_classes=10, width=width)
    variables = models.init_variables(model, jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (n, 32, 32, 3))
    _, stats = models.train_apply(model, variables["batch_stats"])(variables["params"], x)
    cast = lambda tree: jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), tree)  # noqa: E731
    return models.eval_apply(model, cast(stats)), cast(variables["params"]), x.astype(dtype)


def explicit_kernels(apply_fn, params, x1, x2):
    """(C, C, N1, N2) from a materialised Jacobian J (N, C, P)."""
    def jac(x):
        tree = jax.jacrev(lambda p: apply_fn(p, x))(params)
        return jnp.concatenate([leaf.reshape(x.shape[0], 10, -1)
                                for leaf in jax.tree_util.tree_leaves(tree)], axis=-1)
    return np.asarray(jnp.einsum("icp,jdp->cdij", jac(x1), jac(x2)))


def expected(full, kind):
    diagonal = np.einsum("ccij->cij", full)
    if kind == "trace":
        return diagonal.mean(0)
    if kind == "per_class":
        return diagonal
    if kind == "full":
        return full
    return full[kind[1], kind[1]]


KINDS = ["trace", "per_class", "full", ("logit", 5)]


def relative_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def budget(params, strategy: str, n: int, block: int = 4) -> int:
    """A memory budget that makes :func:`kernels.plan_kernel` choose ``strategy`` for n images."""
    per_logit = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)) * \
        jax.tree_util.tree_leaves(params)[0].dtype.itemsize
    return {"all": 10 * n * per_logit, "per_logit": n * per_logit,
            "blocked": 2 * block * per_logit}[strategy]


STRATEGIES = ["all", "per_logit", "blocked"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_kernels_equal_explicit_jacobian_products_in_float64(kind, strategy):
    with jax.enable_x64(True):
        apply_fn, params, x = tiny_net(2, jnp.float64)
        full = explicit_kernels(apply_fn, params, x, x)
        # blocks of 4 do not divide the 6 images
        k = kernels.empirical_ntk(apply_fn, params, x, kind=kind,
                                  memory_bytes=budget(params, strategy, len(x)))
        assert k.dtype == np.float64
        assert relative_error(k, expected(full, kind)) < 1e-6


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_image_jacobian_is_computed_as_often_as_the_plan_says(strategy, monkeypatch):
    apply_fn, params, x = tiny_net(2, jnp.float32, n=10)
    computed = []
    original = kernels._jacobians

    def counting(fn, p, context, images, logits, chunk):
        computed.append(len(images) * len(logits) / 10)  # in whole-image (10-logit) Jacobians
        return original(fn, p, context, images, logits, chunk)

    monkeypatch.setattr(kernels, "_jacobians", counting)
    memory = budget(params, strategy, len(x), block=3)
    kernels.empirical_ntk(apply_fn, params, x, kind="per_class", memory_bytes=memory)
    plan = kernels.plan_kernel(10, None, 10, sum(a.size for a in jax.tree_util.tree_leaves(params)),
                               4, True, memory)
    assert plan.strategy == strategy
    assert sum(computed) == pytest.approx(plan.jacobians)
    if strategy != "blocked":
        assert sum(computed) == pytest.approx(10)  # every image's Jacobian exactly once
    else:
        assert 10 < sum(computed) < 2 * 10 * 10  # blocks are recomputed, not all pairs


@pytest.mark.parametrize("kind", KINDS)
def test_cross_kernel_is_the_transpose_of_the_swapped_one(kind):
    with jax.enable_x64(True):
        apply_fn, params, x = tiny_net(2, jnp.float64, n=7)
        k12 = kernels.empirical_ntk(apply_fn, params, x[:3], x[3:], kind=kind,
                                    memory_bytes=budget(params, "blocked", 7, block=2))
        k21 = kernels.empirical_ntk(apply_fn, params, x[3:], x[:3], kind=kind)
        full = explicit_kernels(apply_fn, params, x[:3], x[3:])
    np.testing.assert_allclose(k12, expected(full, kind), rtol=1e-9, atol=1e-12)
    swapped = np.swapaxes(k21, -1, -2)
    if kind == "full":
        swapped = np.swapaxes(swapped, 0, 1)
    np.testing.assert_allclose(k12, swapped, rtol=1e-9, atol=1e-12)


def test_smoke_model_kernel_in_float32():
    apply_fn, params, x = tiny_net(8, jnp.float32, n=5)
    full = explicit_kernels(apply_fn, params, x, x)
    k = kernels.empirical_ntk(apply_fn, params, x, kind="per_class")
    assert relative_error(k, expected(full, "per_class")) < 1e-4


def test_bad_kernel_kind_is_rejected():
    apply_fn, params, x = tiny_net(2, jnp.float32, n=2)
    with pytest.raises(ValueError, match="logit"):
        kernels.empirical_ntk(apply_fn, params, x, kind=("logit", 10))


def test_the_plan_follows_the_memory_budget():
    # ResNet-18 width 64: 11.2M params x 10 logits x 4 bytes = 447 MB per image, 500 images
    paper = dict(n1=500, n2=None, num_logits=10, num_params=11_173_962, itemsize=4)
    on_h100 = kernels.plan_kernel(**paper, diagonal_only=True, memory_bytes=40 * 2**30)
    assert (on_h100.strategy, on_h100.jacobians) == ("per_logit", 500)  # 22 GB per logit
    # 8 GiB: two blocks of 96 images' gradients of one logit (44.7 MB each)
    blocked = kernels.plan_kernel(**paper, diagonal_only=True, memory_bytes=8 * 2**30)
    assert (blocked.strategy, blocked.block) == ("blocked", 96)
    # 6 row blocks (5 x 96 + 20), each computed once, and again as a column once per earlier
    # row block: 500 + 96 (1 + 2 + 3 + 4) + 20 * 5 = 1560 image Jacobians, 3.1x the ideal
    assert blocked.jacobians == 1560
    full = kernels.plan_kernel(**paper, diagonal_only=False, memory_bytes=40 * 2**30)
    assert (full.strategy, full.block) == ("blocked", 48)  # every logit at once
    small = kernels.plan_kernel(500, None, 10, 6_418, 4, True, 2**30)
    assert (small.strategy, small.jacobians) == ("all", 500)


def test_memory_budget_can_be_set(monkeypatch):
    monkeypatch.setenv("NTKBOOK_KERNEL_MEMORY_MB", "3")
    assert kernels.memory_budget() == 3 * 2**20
    monkeypatch.delenv("NTKBOOK_KERNEL_MEMORY_MB")
    assert kernels.memory_budget() > 2**20  # half the free memory of this machine


def test_kernel_distance_on_known_pairs():
    k = np.array([[2.0, 1.0], [1.0, 3.0]])
    assert kernels.kernel_distance(k, 3 * k) == pytest.approx(0.0, abs=1e-12)
    assert kernels.kernel_distance(np.eye(2), np.ones((2, 2))) == pytest.approx(1 - 1 / np.sqrt(2))
    assert kernels.kernel_distance(np.diag([1.0, 0.0]), np.diag([0.0, 1.0])) == pytest.approx(1.0)


def test_effective_rank_of_rank_one_and_identity():
    u = np.random.default_rng(0).normal(size=20)
    assert kernels.effective_rank(np.outer(u, u)) == pytest.approx(1.0, abs=1e-6)
    assert kernels.effective_rank(np.eye(20)) == pytest.approx(20.0)
    assert kernels.effective_rank(np.diag([1.0, 1.0, 0.0])) == pytest.approx(2.0)


def test_kernel_velocity_divides_by_fractional_epoch_gaps():
    k = np.array([[2.0, 1.0], [1.0, 3.0]])
    velocity = kernels.kernel_velocity([0.0, 0.5, 2.0], [np.eye(2), 3 * np.eye(2), np.ones((2, 2))])
    np.testing.assert_allclose(velocity, [0.0, (1 - 1 / np.sqrt(2)) / 1.5])
    assert kernels.kernel_velocity([0.25, 0.5], [k, np.eye(2)])[0] == pytest.approx(
        4 * kernels.kernel_distance(k, np.eye(2)))
    with pytest.raises(ValueError, match="increase"):
        kernels.kernel_velocity([1.0, 1.0], [k, k])


def test_mean_specialization_on_a_hand_computed_three_class_example():
    # K^d = identity with 2 at image d; images 0, 1, 2 have classes 0, 1, 2. All norms are
    # sqrt(6), so A(K^d, y_c y_c^T) = K^d[c, c] / sqrt(6): KSM(c, c) = 2 / ((2 + 1 + 1) / 3)
    # = 1.5 and KSM(c, c') = 1 / (4 / 3) = 0.75 off the diagonal.
    class_kernels = np.array([np.diag([2.0, 1, 1]), np.diag([1.0, 2, 1]), np.diag([1.0, 1, 2])])
    labels = np.array([0, 1, 2])
    ksm = kernels.specialization_matrix(class_kernels, labels)
    np.testing.assert_allclose(ksm, np.where(np.eye(3, dtype=bool), 1.5, 0.75))
    assert kernels.mean_specialization(class_kernels, labels) == pytest.approx(1.5)
    same = np.array([np.diag([2.0, 1, 1])] * 3)
    assert kernels.mean_specialization(same, labels) == pytest.approx(1.0)


def test_specialization_lies_in_zero_to_num_classes_for_psd_kernels():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4, 12, 5)) ** 2  # non-negative features: aligned kernels
    class_kernels = np.einsum("cnf,cmf->cnm", features, features)
    labels = np.repeat(np.arange(4), 3)
    ksm = kernels.specialization_matrix(class_kernels, labels)
    assert np.all(ksm >= 0) and np.all(ksm <= 4)
    np.testing.assert_allclose(ksm.mean(axis=0), 1.0)  # each column averages to one
    assert 0 <= kernels.mean_specialization(class_kernels, labels) <= 4
