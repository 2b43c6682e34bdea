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
from cnnjax.models.layers import BatchNorm, per_axis


class Model(nn.Module):
  num_classes: int
  conv_features: Sequence[int] = (64, 128, 128)  # Each residual block's width.
  kernel_sizes: Sequence[Any] = (8, 5, 3)  # The convolutions of every block (a size or one per axis).
  batch_norm_momentum: float = 0.9  # Decay of BatchNorm's running statistics.
  dtype: Any = jnp.float32  # Compute dtype; parameters stay float32.
  axis_name: str | None = None  # Device axis over which BatchNorm sees the batch.

  def __post_init__(self):
    if not self.conv_features or any(f < 1 for f in self.conv_features):
      raise ConfigError("model.conv_features", f"needs one or more positive block widths, got {tuple(self.conv_features)}")
    if not self.kernel_sizes:
      raise ConfigError("model.kernel_sizes", "gives each residual block's conv kernels, e.g. (8, 5, 3)")
    if not 0.0 <= self.batch_norm_momentum < 1.0:
      raise ConfigError("model.batch_norm_momentum", f"must be in [0, 1), got {self.batch_norm_momentum}")
    super().__post_init__()

  def check_input(self, input_shape: Sequence[int]) -> None:
    for kernel in self.kernel_sizes:
      per_axis(kernel, len(input_shape) - 1, "model.kernel_sizes")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
    """`mask` marks the real examples of a padded batch (for BatchNorm's statistics)."""
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
        shortcut = nn.Conv(features, (1,) * rank, use_bias=False, dtype=self.dtype,
                           name=f"block{b}_shortcut")(shortcut)
      shortcut = norm(f"block{b}_shortcut_bn")(shortcut)
      x = nn.relu(x + shortcut)
      self.sow("features", f"block{b}", x)
    x = x.mean(axis=tuple(range(1, rank + 1)))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x).astype(jnp.float32)
