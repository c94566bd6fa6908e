"""Where a small-CNN step's time goes: forward, gradient with respect to the weights, and with
respect to the input (what PGD needs), for the whole network, without BatchNorm, the first
convolution alone, and every convolution written as patches times a matmul.

    python benchmarks/step_split.py [--width 16] [--batch 128] [--repeats 7]

Medians of compiled calls, BatchNorm in train mode; results in RESULTS.md (issue 18).
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from throughput import seconds_per_call


def patches_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                 precision=None, preferred_element_type=None):
    """An NHWC / HWIO convolution as nine strided slices concatenated, times a matmul."""
    kh, kw, cin, cout = rhs.shape
    sh, sw = window_strides
    x = jnp.pad(lhs, ((0, 0), *padding, (0, 0)))
    n, h, w, _ = x.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    cols = [lax.slice(x, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, cin),
                      (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]
    patches = jnp.concatenate(cols, axis=-1).reshape(-1, kh * kw * cin)
    return (patches @ rhs.reshape(kh * kw * cin, cout)).reshape(n, oh, ow, cout)


class Net(nn.Module):
    """The book's small CNN, with parts that can be left out."""

    width: int
    layers: int = 3
    batch_norm: bool = True
    patches: bool = False

    @nn.compact
    def __call__(self, x):
        for multiplier, strides in ((1, 1), (2, 2), (4, 2))[:self.layers]:
            conv = nn.Conv(self.width * multiplier, (3, 3), strides, padding=1, use_bias=False,
                           **({"conv_general_dilated": patches_conv} if self.patches else {}))
            x = conv(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)(x)
            x = nn.relu(x)
        return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


def median_ms(fn, *args, repeats: int) -> float:
    return 1e3 * seconds_per_call(fn, *args, repeats=repeats)


def split(net: Net, x: jax.Array, repeats: int) -> tuple[float, float, float]:
    variables = net.init(jax.random.PRNGKey(0), x[:1])
    y = jnp.arange(len(x)) % 10

    def logits(params, z):
        return net.apply({**variables, "params": params}, z, mutable=["batch_stats"])[0]

    def loss(params, z):
        return -jnp.mean(jax.nn.log_softmax(logits(params, z))[jnp.arange(len(z)), y])

    params = variables["params"]
    return (median_ms(jax.jit(logits), params, x, repeats=repeats),
            median_ms(jax.jit(jax.grad(loss)), params, x, repeats=repeats),
            median_ms(jax.jit(jax.grad(loss, argnums=1)), params, x, repeats=repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    x = jax.random.uniform(jax.random.PRNGKey(1), (args.batch, 32, 32, 3))
    cases = {"whole network": Net(args.width),
             "without BatchNorm": Net(args.width, batch_norm=False),
             "first convolution alone": Net(args.width, layers=1),
             "convolutions as patches x matmul": Net(args.width, patches=True)}
    print(f"small CNN width {args.width}, batch {args.batch}, medians of {args.repeats} (ms)\n"
          "| case | forward | weight gradient | input gradient |\n|---|---|---|---|")
    for label, net in cases.items():
        print(f"| {label} | " + " | ".join(f"{ms:.1f}" for ms in split(net, x, args.repeats))
              + " |", flush=True)


if __name__ == "__main__":
    main()
