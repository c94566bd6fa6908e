"""Time, peak memory and achieved FLOP/s of the empirical trace NTK on the active JAX device.

    python benchmarks/kernel_throughput.py [--cases small_cnn:8:100 small_cnn:8:500 ...]

A case is model:width:N (N images, random, BatchNorm in eval mode). Each case runs in its own
process so peak memory is its own (max RSS on CPU, the device's peak bytes on GPU). FLOPs are
XLA's cost analysis of one Jacobian block and one contraction block, times the number of
blocks ``empirical_ntk`` computes; the wall time includes its compilations. The reference is
a float32 matmul of two 4096 x 4096 matrices on the same device. Results go to RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

from ntkbook import kernels, models

DEFAULT_CASES = ["small_cnn:8:100", "small_cnn:8:500", "resnet18:16:100", "resnet18:16:500",
                 "resnet18:64:100", "resnet18:64:500"]


def matmul_flops_per_second(n: int = 4096, repeats: int = 5) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    matmul = jax.jit(jnp.dot)
    matmul(a, a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        matmul(a, a).block_until_ready()
    return repeats * 2 * n**3 / (time.perf_counter() - start)


def _flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", math.nan))


def kernel_flops(apply_fn, params, n: int, block: int, num_classes: int) -> float:
    """FLOPs of the blocked symmetric trace kernel (Jacobian blocks + contractions)."""
    x = jnp.zeros((block, 32, 32, 3))

    def jacobian(p, images):
        jac = jax.vmap(jax.jacrev(lambda q, im: apply_fn(q, im[None])[0]),
                       in_axes=(None, 0))(p, images)
        return [leaf.reshape(block, num_classes, -1) for leaf in jax.tree_util.tree_leaves(jac)]

    j = jax.eval_shape(jacobian, params, x)
    j = [jnp.zeros(s.shape, s.dtype) for s in j]
    rows = math.ceil(n / block)
    pairs = rows * (rows + 1) // 2
    contract = lambda a, b: sum(jnp.einsum("icp,jcp->ij", u, v) for u, v in zip(a, b, strict=True))  # noqa: E731
    # per row one Jacobian, reused on the diagonal, plus one per off-diagonal block: ``pairs``
    return pairs * (_flops(jacobian, params, x) + _flops(contract, j, j))


def run_case(case: str) -> dict:
    name, width, n = case.split(":")
    model = models.build_model(name, 10, int(width))
    variables = models.init_variables(model, jax.random.PRNGKey(0))
    apply_fn = models.eval_apply(model, variables["batch_stats"])
    params = variables["params"]
    x = jax.random.uniform(jax.random.PRNGKey(1), (int(n), 32, 32, 3))
    num_params = models.count_params(params)
    block = min(int(n), kernels.block_size_for(num_params, 10, 4))
    start = time.perf_counter()
    jax.block_until_ready(kernels.empirical_ntk(apply_fn, params, x, kind="trace"))
    seconds = time.perf_counter() - start
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    peak = stats.get("peak_bytes_in_use") or rss
    flops = kernel_flops(apply_fn, params, int(n), block, 10)
    return {"case": case, "params": num_params, "block": block, "seconds": seconds,
            "peak_gb": peak / 1e9, "gflops": flops / 1e9, "achieved": flops / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=DEFAULT_CASES)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one)))
        return
    reference = matmul_flops_per_second()
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}; "
          f"float32 matmul: {reference / 1e9:.1f} GFLOP/s; kernel memory budget "
          f"{kernels.DEFAULT_MEMORY_BYTES / 2**20:.0f} MiB")
    print("| model | parameters | N | block | time | peak memory | GFLOP | achieved | of matmul |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        out = subprocess.run([sys.executable, __file__, "--one", case], capture_output=True,
                             text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        name, width, n = case.split(":")
        print(f"| {name} width {width} | {r['params']:,} | {n} | {r['block']} | "
              f"{r['seconds']:.1f} s | {r['peak_gb']:.2f} GB | {r['gflops']:,.0f} | "
              f"{r['achieved'] / 1e9:.1f} GFLOP/s | {100 * r['achieved'] / reference:.0f} % |",
              flush=True)


if __name__ == "__main__":
    main()
