"""Images per second of the training-loop kernels on the active JAX device.

    python benchmarks/throughput.py [--models small_cnn:8 resnet18:16 resnet18:64] [--batch 128]

For each model: a standard SGD step (BatchNorm in train mode, as in stage 1), the same with
frozen BatchNorm, one PGD iteration, and linearized / centered stage-2 steps (one jax.jvp
inside the gradient, frozen BatchNorm). The paper puts linearized training at ~2x a standard
step; the ratio printed is linearized / standard. Results are recorded in RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp

from ntkbook import models
from ntkbook.attacks import pgd_linf
from ntkbook.train import forward_fn, init_state, make_train_step, sgd


def seconds_per_call(fn, *args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` after one compiling call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench_model(name: str, width: int, batch: int, repeats: int) -> dict[str, float]:
    model = models.build_model(name, 10, width)
    variables = models.init_variables(model, jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (batch, 32, 32, 3))
    y = jnp.arange(batch) % 10
    key = jax.random.PRNGKey(2)
    tx = sgd(0.01, 0.9)
    stage2 = {**variables, "params_t": variables["params"]}
    steps = {
        "standard (train BN)": (forward_fn(model, "standard", True), variables),
        "standard (frozen BN)": (forward_fn(model, "standard", False), variables),
        "linearized": (forward_fn(model, "linearized", False), stage2),
        "centered": (forward_fn(model, "centered", False), stage2),
    }
    out = {}
    for label, (forward, start) in steps.items():
        step = make_train_step(forward, tx)
        out[label] = seconds_per_call(step, init_state(start, tx), x, y, key, repeats=repeats)
    apply_fn = models.eval_apply(model, variables["batch_stats"])
    pgd = jax.jit(lambda params, x, y, key: pgd_linf(
        lambda z: apply_fn(params, z), x, y, eps=4 / 255, steps=1, step_size=0.004, key=key))
    out["PGD iteration"] = seconds_per_call(pgd, variables["params"], x, y, key,
                                            repeats=repeats)
    print(f"\n{name} width {width}: {models.count_params(variables['params']):,} parameters, "
          f"batch {batch}")
    for label, seconds in out.items():
        print(f"  {label:<22} {seconds * 1e3:9.1f} ms  {batch / seconds:9.0f} images/s")
    print(f"  linearized / standard (train BN)  = "
          f"{out['linearized'] / out['standard (train BN)']:.2f}x")
    print(f"  linearized / standard (frozen BN) = "
          f"{out['linearized'] / out['standard (frozen BN)']:.2f}x")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["small_cnn:8", "resnet18:16", "resnet18:64"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"device: {device.platform} {device.device_kind} ({jax.device_count()} devices); "
          f"jax {jax.__version__}; {platform.processor() or platform.machine()}")
    for spec in args.models:
        name, width = spec.split(":")
        bench_model(name, int(width), args.batch, args.repeats)


if __name__ == "__main__":
    main()
