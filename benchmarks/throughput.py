"""Training steps, attacks and their cost on the active JAX device (compiled, after warm-up).

    python benchmarks/throughput.py [--models small_cnn:8 small_cnn:16 resnet18:16] [--batch 128]

Per model: a standard SGD step with BatchNorm in train mode (stage 1) and frozen (the baseline
of stage 2), linearized and centered stage-2 steps (frozen BatchNorm, one jax.jvp inside the
gradient), one PGD iteration through the plain network and through the centered model, and,
per image, the audit's attacks (APGD-CE and one APGD-T target per iteration, Square per
query) against one PGD iteration. Results are recorded in RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp

from ntkbook import attacks, models
from ntkbook.train import SGD, forward_fn, init_state, jitted_step, make_train_step

EPS = 4 / 255
ITERATIONS = 10  # attack iterations timed per call


def seconds_per_call(fn, *args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` after one compiling call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _attack_program(kind: str, forward, variables):
    logits = lambda z: forward(variables, z, False)[0]  # noqa: E731
    programs = {
        "pgd": lambda x, y, k: attacks.pgd_linf(logits, x, y, eps=EPS, steps=ITERATIONS,
                                                step_size=EPS / 4, key=k),
        "apgd": lambda x, y, k: attacks.apgd_linf(logits, x, y, eps=EPS, steps=ITERATIONS,
                                                  key=k),
        "apgd_t": lambda x, y, k: attacks.apgd_linf(logits, x, y, eps=EPS, steps=ITERATIONS,
                                                    key=k, target=(y + 1) % 10),
        "square": lambda x, y, k: attacks.square_linf(logits, x, y, eps=EPS,
                                                      queries=ITERATIONS, key=k),
    }
    return jax.jit(programs[kind])


def bench_model(name: str, width: int, batch: int, repeats: int) -> dict[str, float]:
    model = models.build_model(name, 10, width)
    variables = models.init_variables(model, jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (batch, 32, 32, 3))
    y = jnp.arange(batch) % 10
    key = jax.random.PRNGKey(2)
    optimiser = SGD(0.01, 0.9)
    stage2 = {**variables, "params_t": variables["params"]}
    steps = {
        "standard (train BN)": (forward_fn(model, "standard", True), variables),
        "standard (frozen BN)": (forward_fn(model, "standard", False), variables),
        "linearized": (forward_fn(model, "linearized", False), stage2),
        "centered": (forward_fn(model, "centered", False), stage2),
    }
    out = {}
    for label, (forward, start) in steps.items():
        step = jitted_step(make_train_step(forward, optimiser))
        out[label] = seconds_per_call(step, init_state(start, optimiser), x, y, key,
                                      repeats=repeats)
    for label, forward, start in (("PGD iteration", forward_fn(model), variables),
                                  ("PGD iteration, centered", forward_fn(model, "centered"),
                                   stage2)):
        out[label] = seconds_per_call(_attack_program("pgd", forward, start), x, y, key,
                                      repeats=repeats) / ITERATIONS
    for kind, label in (("apgd", "APGD-CE iteration"), ("apgd_t", "APGD-T iteration (1 target)"),
                        ("square", "Square query")):
        out[label] = seconds_per_call(_attack_program(kind, forward_fn(model), variables), x, y,
                                      key, repeats=repeats) / ITERATIONS
    frozen, pgd = out["standard (frozen BN)"], out["PGD iteration"]
    cells = [f"{name} width {width}", f"{models.count_params(variables['params']):,}"]
    cells += [f"{out[label] * 1e3:.1f} ms" for label in list(steps)]
    cells += [f"{out['linearized'] / frozen:.2f}x", f"{out['centered'] / frozen:.2f}x",
              f"{pgd * 1e3:.1f} ms", f"{out['PGD iteration, centered'] / pgd:.2f}x"]
    cells += [f"{out[label] / pgd:.2f}x" for label in
              ("APGD-CE iteration", "APGD-T iteration (1 target)", "Square query")]
    print("| " + " | ".join(cells) + " |", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["small_cnn:8", "small_cnn:16",
                                                       "resnet18:16"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = jax.devices()[0]
    print(f"device: {device.platform} {device.device_kind} ({jax.device_count()} devices); "
          f"jax {jax.__version__}; {platform.processor() or platform.machine()}; "
          f"batch {args.batch}")
    print("| model | parameters | standard step, train BN | standard step, frozen BN | "
          "linearized step | centered step | linearized / standard (frozen BN) | "
          "centered / standard (frozen BN) | PGD iteration | PGD through the centered model / "
          "through the network | APGD-CE iteration / PGD | APGD-T iteration (one target) / PGD "
          "| Square query / PGD |")
    print("|" + "---|" * 13)
    for spec in args.models:
        name, width = spec.split(":")
        bench_model(name, int(width), args.batch, args.repeats)


if __name__ == "__main__":
    main()
