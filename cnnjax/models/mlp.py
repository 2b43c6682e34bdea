"""A plain multilayer perceptron: the "regular neural network" the talk compares CNNs to."""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import ConfigError
from cnnjax.models.layers import Dropout


class Model(nn.Module):
  num_classes: int
  dense_features: Sequence[int] = (128,)  # Hidden layers, each followed by ReLU and dropout.
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32  # Compute dtype; parameters stay float32.
  axis_name: str | None = None  # Device axis over which dropout sees the batch.

  def __post_init__(self):
    if any(f < 1 for f in self.dense_features):
      raise ConfigError("model.dense_features", f"widths must be positive, got {tuple(self.dense_features)}")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ConfigError("model.dropout_rate", f"must be in [0, 1), got {self.dropout_rate}")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
    del mask  # No batch statistics: a padded batch's padding changes nothing here.
    x = x.reshape((x.shape[0], -1))
    for i, features in enumerate(self.dense_features):
      x = nn.relu(nn.Dense(features, dtype=self.dtype, name=f"dense{i}")(x))
      x = Dropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x).astype(jnp.float32)
