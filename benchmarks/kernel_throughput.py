"""The empirical NTK against its ideal cost, on the active JAX device.

    python benchmarks/kernel_throughput.py [--cases small_cnn:16:256 resnet18:16:100]

A case is model:width:N (N random images, BatchNorm in eval mode, trace kernel). For each:
``empirical_ntk`` with the default memory budget (every Jacobian once), the ideal ("every
per-image Jacobian once, in one vmapped call, then one Gram matmul"), and ``empirical_ntk``
with a budget of a quarter of the Jacobians (the blocked layout), with its recomputation
factor. Times are medians of compiled calls (compilation reported apart). Results go to
RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from ntkbook import kernels, models

DEFAULT_CASES = ["small_cnn:16:256", "small_cnn:8:500", "resnet18:16:100"]


def median_seconds(fn, repeats: int = 3) -> tuple[float, float]:
    """(first call, median of ``repeats`` later calls) in seconds."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, sorted(times)[len(times) // 2]


def ideal_kernel(apply_fn, params, x):
    """Every per-image Jacobian once (one vmapped jacrev over all images), one Gram matmul."""
    def jacobians(p, images):
        jac = jax.vmap(jax.jacrev(lambda q, im: apply_fn(q, im[None])[0]), in_axes=(None, 0))(
            p, images)
        return jnp.concatenate([leaf.reshape(len(images), 10, -1)
                                for leaf in jax.tree_util.tree_leaves(jac)], axis=-1)

    program = jax.jit(lambda p, images: jnp.einsum("icp,jcp->ij", jacobians(p, images),
                                                   jacobians(p, images)) / 10)
    return lambda: program(params, x)


def run_case(case: str) -> None:
    name, width, n = case.split(":")
    n = int(n)
    model = models.build_model(name, 10, int(width))
    variables = models.init_variables(model, jax.random.PRNGKey(0))
    apply_fn = models.eval_apply(model, variables["batch_stats"])
    params = variables["params"]
    x = jax.random.uniform(jax.random.PRNGKey(1), (n, 32, 32, 3))
    num_params = models.count_params(params)
    jacobian_bytes = n * 10 * num_params * 4
    quarter = jacobian_bytes // 4
    plan = kernels.plan_kernel(n, None, 10, num_params, 4, True, quarter)
    ours_first, ours = median_seconds(lambda: kernels.empirical_ntk(apply_fn, params, x))
    ideal_first, ideal = median_seconds(ideal_kernel(apply_fn, params, x))
    blocked_first, blocked = median_seconds(
        lambda: kernels.empirical_ntk(apply_fn, params, x, memory_bytes=quarter))
    print(f"| {name} width {width} | {num_params:,} | {n} | {jacobian_bytes / 2**20:.0f} MiB | "
          f"{ideal:.2f} s | {ours:.2f} s ({ours / ideal:.2f}x) | "
          f"{blocked:.2f} s ({blocked / ideal:.2f}x; {plan.strategy}, blocks of {plan.block}, "
          f"{plan.jacobians / n:.2f} Jacobians per image) | "
          f"{ideal_first:.1f} / {ours_first:.1f} / {blocked_first:.1f} s |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=DEFAULT_CASES)
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    print("| model | parameters | N | Jacobians | ideal | empirical_ntk | blocked (budget: a "
          "quarter of the Jacobians) | first calls (ideal / ours / blocked) |")
    print("|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        run_case(case)


if __name__ == "__main__":
    main()
