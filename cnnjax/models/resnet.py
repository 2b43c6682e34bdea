"""The residual network for time-series classification of Wang et al. (2017), any rank.

Blocks of three convolutions (kernel sizes `kernel_sizes`, default 8, 5, 3) with
BatchNorm and ReLU, and a shortcut (a 1x1 convolution with BatchNorm where the width
changes); `conv_features` gives each block's width (64, 128, 128 in the paper); then
global average pooling and the classifier.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import ConfigError
from cnnjax.models.cnn import per_axis
from cnnjax.models.layers import BatchNorm


class ResNet(nn.Module):
  num_classes: int
  conv_features: Sequence[int] = (64, 128, 128)
  kernel_sizes: Sequence[Any] = (8, 5, 3)
  batch_norm_momentum: float = 0.9
  dtype: Any = jnp.float32  # Compute dtype (bfloat16 on accelerators); parameters stay float32.
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
    rank = x.ndim - 2
    norm = lambda name: functools.partial(
        BatchNorm(use_running_average=not train, momentum=self.batch_norm_momentum,
                  axis_name=self.axis_name, dtype=self.dtype, name=name), mask=mask)
    for b, features in enumerate(self.conv_features):
      shortcut = x
      for i, kernel in enumerate(self.kernel_sizes):
        x = nn.Conv(features, per_axis(kernel, rank, "model.kernel_sizes"), padding="SAME",
                    use_bias=False, dtype=self.dtype, name=f"block{b}_conv{i}")(x)
        x = norm(f"block{b}_bn{i}")(x)
        if i < len(self.kernel_sizes) - 1:
          x = nn.relu(x)
      if shortcut.shape[-1] != features:
        shortcut = nn.Conv(features, (1,) * rank, use_bias=False, dtype=self.dtype, name=f"block{b}_shortcut")(shortcut)
      shortcut = norm(f"block{b}_shortcut_bn")(shortcut)
      x = nn.relu(x + shortcut)
      self.sow("features", f"block{b}", x)
    x = x.mean(axis=tuple(range(1, rank + 1)))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x).astype(jnp.float32)


def validate_config(c) -> None:
  if not c.conv_features or any(f < 1 for f in c.conv_features):
    raise ConfigError("model.conv_features", f"needs one or more positive block widths, got {tuple(c.conv_features)}")
  if not c.kernel_sizes:
    raise ConfigError("model.kernel_sizes", "gives each residual block's conv kernels, e.g. (8, 5, 3)")


def check_input(c, input_shape: Sequence[int]) -> None:
  for kernel in c.kernel_sizes:
    per_axis(kernel, len(input_shape) - 1, "model.kernel_sizes")


def build(c, num_classes: int, axis_name: str | None = None) -> ResNet:
  return ResNet(num_classes=num_classes, conv_features=tuple(c.conv_features),
                kernel_sizes=tuple(c.kernel_sizes), batch_norm_momentum=c.batch_norm_momentum,
                dtype=jnp.dtype(c.dtype), axis_name=axis_name)
