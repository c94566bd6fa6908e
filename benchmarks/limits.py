"""The engine against this machine's limit: achieved GFLOP/s of the book's hot programs next to
a large matmul's, measured in the same process.

    python benchmarks/limits.py [--model small_cnn:16] [--batch 128] [--kernel-images 128]

Useful FLOPs per image (a forward F = 2 x the convolutions' multiply-adds,
:func:`ntkbook.config.forward_macs`): a training step 3F; a PGD iteration 2F (forward and input
gradient); the stage-1 adversarial step of the authors' script, clean step then k PGD
iterations then adversarial step, (3 + 2k + 3)F; a centered step 5F (the jvp's primal and
tangent, and their transposes); a kernel block of N images with C logits and P parameters,
C per-image gradients (3F each) plus the Gram sum 2 C N^2 P. The matmul is 2 n^3 for n x n.
Results go in RESULTS.md ("The engine against the machine's limit").
"""

from __future__ import annotations

import argparse
import platform

import jax
import jax.numpy as jnp
from throughput import EPS, ITERATIONS, _attack_program, seconds_per_call

from ntkbook import config, kernels, models
from ntkbook.train import SGD, AttackSettings, forward_fn, init_state, jitted_step, make_train_step

MATMUL = 2048
TRAIN_PGD_STEPS = 3  # the cpu profile's


def matmul_gflops(repeats: int) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (MATMUL, MATMUL), jnp.float32)
    seconds = seconds_per_call(jax.jit(lambda m: m @ m), a, repeats=repeats)
    return 2 * MATMUL ** 3 / seconds / 1e9


def programs(name: str, width: int, batch: int, kernel_images: int, repeats: int
             ) -> dict[str, tuple[float, float]]:
    """``{program: (seconds per call, useful FLOPs per call)}``."""
    model = models.build_model(name, 10, width)
    variables = models.init_variables(model, jax.random.PRNGKey(0))
    params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"]))
    forward = 2 * config.forward_macs(name, width)
    x = jax.random.uniform(jax.random.PRNGKey(1), (batch, 32, 32, 3))
    y = jnp.arange(batch) % 10
    key = jax.random.PRNGKey(2)
    optimiser = SGD(0.1, 0.9)
    stage2 = {**variables, "params_t": variables["params"]}
    train = forward_fn(model, "standard", True)
    attack = AttackSettings(EPS, TRAIN_PGD_STEPS, 2 * EPS / TRAIN_PGD_STEPS)
    steps = {
        "stage-1 step, benign": (make_train_step(train, optimiser), variables, 3),
        f"stage-1 step, adversarial (PGD-{TRAIN_PGD_STEPS}, clean then adversarial)": (
            make_train_step(train, optimiser, attack=attack, clean_first=True), variables,
            6 + 2 * TRAIN_PGD_STEPS),
        "centered step": (make_train_step(forward_fn(model, "centered"), optimiser), stage2, 5),
    }
    out = {label: (seconds_per_call(jitted_step(step), init_state(start, optimiser), x, y, key,
                                    repeats=repeats), forwards * forward * batch)
           for label, (step, start, forwards) in steps.items()}
    pgd = seconds_per_call(_attack_program("pgd", forward_fn(model), variables), x, y, key,
                           repeats=repeats) / ITERATIONS
    out["PGD iteration"] = (pgd, 2 * forward * batch)
    images = jax.random.uniform(jax.random.PRNGKey(3), (kernel_images, 32, 32, 3))
    logits = lambda p, z: forward_fn(model)({**variables, "params": p}, z, False)[0]  # noqa: E731
    seconds = seconds_per_call(
        lambda z: kernels.empirical_ntk(logits, variables["params"], z, kind="trace"), images,
        repeats=max(1, repeats // 2))
    out[f"kernel block ({kernel_images} images, trace)"] = (
        seconds, 10 * kernel_images * 3 * forward + 2 * 10 * kernel_images ** 2 * params)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn:16")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--kernel-images", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    name, width = args.model.split(":")
    device = jax.devices()[0]
    print(f"device: {device.platform} {device.device_kind}; jax {jax.__version__}; "
          f"{platform.processor() or platform.machine()}; {name} width {width}, batch "
          f"{args.batch}")
    limit = matmul_gflops(args.repeats)
    print(f"| program | time per call | useful GFLOP/s | of the matmul rate |\n|---|---|---|---|\n"
          f"| {MATMUL}x{MATMUL} float32 matmul (the limit) | | {limit:.0f} | 1.00 |")
    for label, (seconds, flops) in programs(name, int(width), args.batch, args.kernel_images,
                                            args.repeats).items():
        rate = flops / seconds / 1e9
        print(f"| {label} | {seconds * 1e3:.1f} ms | {rate:.1f} | {rate / limit:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
