"""Flax linen models: the paper's ResNet-18 (with a width multiplier) and a small CNN.

Both use BatchNorm. ``width=64`` gives the paper's ~11M-parameter ResNet-18 for 32x32 inputs
(3x3 stride-1 stem, no max-pool). :func:`eval_apply` turns a model plus BatchNorm statistics
into the pure ``apply_fn(params, x) -> logits`` that dynamics, attacks and kernels take.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ntkbook.compilation import jit

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]

_batch_norm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a (projected) identity shortcut."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        norm = functools.partial(_batch_norm, use_running_average=not train)
        y = nn.Conv(self.features, (3, 3), self.strides, padding=1, use_bias=False)(x)
        y = nn.relu(norm()(y))
        y = nn.Conv(self.features, (3, 3), 1, padding=1, use_bias=False)(y)
        y = norm()(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), self.strides, use_bias=False)(x)
            x = norm()(x)
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """ResNet-18 for CIFAR: stages of width (1, 2, 4, 8) x ``width``, two blocks each."""

    num_classes: int
    width: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Conv(self.width, (3, 3), 1, padding=1, use_bias=False)(x)
        x = nn.relu(_batch_norm(use_running_average=not train)(x))
        for stage, multiplier in enumerate((1, 2, 4, 8)):
            for block in range(2):
                strides = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(self.width * multiplier, strides)(x, train)
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


class SmallCNN(nn.Module):
    """Three conv-BatchNorm-ReLU layers (stride 1, 2, 2), global pooling, a linear head."""

    num_classes: int
    width: int = 16

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for multiplier, strides in ((1, 1), (2, 2), (4, 2)):
            x = nn.Conv(self.width * multiplier, (3, 3), strides, padding=1, use_bias=False)(x)
            x = nn.relu(_batch_norm(use_running_average=not train)(x))
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


MODEL_CLASSES = {"resnet18": ResNet18, "small_cnn": SmallCNN}


def build_model(name: str, num_classes: int, width: int) -> nn.Module:
    return MODEL_CLASSES[name](num_classes=num_classes, width=width)


@jit(static_argnums=0)
def init_variables(model: nn.Module, key: jax.Array) -> dict[str, Params]:
    """``{'params': ..., 'batch_stats': ...}`` for 32x32x3 inputs; one compiled program per
    model (the same values as Flax's op-by-op init, whose dozens of small programs took
    seconds to compile in every fresh process)."""
    variables = model.init(key, jnp.zeros((1, 32, 32, 3), jnp.float32), train=False)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def eval_apply(model: nn.Module, batch_stats: Params) -> ApplyFn:
    """Pure ``(params, x) -> logits`` with BatchNorm in eval mode, statistics closed over."""

    def apply_fn(params: Params, x: jax.Array) -> jax.Array:
        return model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)

    return apply_fn


def train_apply(model: nn.Module, batch_stats: Params) -> Callable:
    """``(params, x) -> (logits, new_batch_stats)`` with BatchNorm using batch statistics."""

    def apply_fn(params: Params, x: jax.Array) -> tuple[jax.Array, Params]:
        logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x,
                                      train=True, mutable=["batch_stats"])
        return logits, updates["batch_stats"]

    return apply_fn


def count_params(params: Params) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(params))
