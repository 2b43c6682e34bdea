"""Convolutional networks of any spatial rank: conv blocks, then dense layers.

The talk's CNN is `conv_features=(8, 16)`, kernel 3, pool 2, no hidden dense layer;
the default MNIST model adds BatchNorm, a hidden dense layer and dropout. Widths and
depth come from the config only: Flax infers every input size, so 8 -> 9 channels or
a third block is a config change.
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import linen as nn

from cnnjax.errors import ConfigError
from cnnjax.models.layers import Dropout, max_pool


class CNN(nn.Module):
  num_classes: int
  conv_features: Sequence[int]
  kernel_size: int = 3
  pool_size: int = 2
  dense_features: Sequence[int] = ()
  batch_norm: bool = False
  batch_norm_momentum: float = 0.9
  dropout_rate: float = 0.0
  axis_name: str | None = None  # Device axis over which BatchNorm averages statistics.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    rank = x.ndim - 2
    for i, features in enumerate(self.conv_features):
      x = nn.Conv(features, (self.kernel_size,) * rank, padding="SAME",
                  use_bias=not self.batch_norm, name=f"conv{i}")(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=self.batch_norm_momentum,
                         axis_name=self.axis_name, name=f"bn{i}")(x)
      x = nn.relu(x)
      self.sow("features", f"relu{i}", x)  # Kept only when "features" is mutable (viz).
      if self.pool_size > 1:
        x = max_pool(x, self.pool_size)
        self.sow("features", f"pool{i}", x)
    x = x.reshape((x.shape[0], -1))
    for i, features in enumerate(self.dense_features):
      x = Dropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
      x = nn.relu(nn.Dense(features, name=f"dense{i}")(x))
    x = Dropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
    return nn.Dense(self.num_classes, name="classifier")(x)


def validate_config(c) -> None:
  if not c.conv_features or any(f < 1 for f in c.conv_features):
    raise ConfigError("model.conv_features", f"needs one or more positive widths, got {tuple(c.conv_features)}")
  if c.kernel_size < 1:
    raise ConfigError("model.kernel_size", f"must be >= 1, got {c.kernel_size}")
  if c.pool_size < 1:
    raise ConfigError("model.pool_size", f"must be >= 1 (1 = no pooling), got {c.pool_size}")
  if any(f < 1 for f in c.dense_features):
    raise ConfigError("model.dense_features", f"widths must be positive, got {tuple(c.dense_features)}")
  if not 0.0 <= c.dropout_rate < 1.0:
    raise ConfigError("model.dropout_rate", f"must be in [0, 1), got {c.dropout_rate}")
  if not 0.0 <= c.batch_norm_momentum < 1.0:
    raise ConfigError("model.batch_norm_momentum", f"must be in [0, 1), got {c.batch_norm_momentum}")


def check_input(c, input_shape: Sequence[int]) -> None:
  """Fails, naming the field, when the blocks pool a feature map below one pixel."""
  spatial = tuple(input_shape[:-1])
  size = spatial
  blocks = len(c.conv_features)
  for block in range(blocks):
    if c.pool_size > 1 and min(size) < c.pool_size:
      shape = "x".join(map(str, size))
      raise ConfigError(
          "model.conv_features",
          f"{blocks} conv blocks pooling by config.model.pool_size={c.pool_size} need a larger "
          f"input: block {block + 1} gets a {shape} feature map from the "
          f"{'x'.join(map(str, spatial))} input; use fewer blocks or a smaller pool_size")
    size = tuple(s // c.pool_size for s in size)


def build(c, num_classes: int, axis_name: str | None = None) -> CNN:
  return CNN(num_classes=num_classes, conv_features=tuple(c.conv_features),
             kernel_size=c.kernel_size, pool_size=c.pool_size,
             dense_features=tuple(c.dense_features), batch_norm=c.batch_norm,
             batch_norm_momentum=c.batch_norm_momentum, dropout_rate=c.dropout_rate,
             axis_name=axis_name)
