"""A plain multilayer perceptron: the "regular neural network" the talk compares CNNs to."""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import ConfigError
from cnnjax.models.layers import Dropout


class MLP(nn.Module):
  num_classes: int
  dense_features: Sequence[int] = (128,)
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32  # Compute dtype (bfloat16 on accelerators); parameters stay float32.
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
    del mask  # No batch statistics.
    x = x.reshape((x.shape[0], -1))
    for i, features in enumerate(self.dense_features):
      x = nn.relu(nn.Dense(features, dtype=self.dtype, name=f"dense{i}")(x))
      x = Dropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x).astype(jnp.float32)


def validate_config(c) -> None:
  if any(f < 1 for f in c.dense_features):
    raise ConfigError("model.dense_features", f"widths must be positive, got {tuple(c.dense_features)}")
  if not 0.0 <= c.dropout_rate < 1.0:
    raise ConfigError("model.dropout_rate", f"must be in [0, 1), got {c.dropout_rate}")


def check_input(c, input_shape: Sequence[int]) -> None:
  del c, input_shape  # Any input shape flattens.


def build(c, num_classes: int, axis_name: str | None = None) -> MLP:
  return MLP(num_classes=num_classes, dense_features=tuple(c.dense_features),
             dropout_rate=c.dropout_rate, dtype=jnp.dtype(c.dtype), axis_name=axis_name)
