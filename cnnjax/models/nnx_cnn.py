"""The talk's CNN written in Flax NNX: what `cnn` builds at its defaults (conv 8 and 16,
3x3 SAME, ReLU, max pool 2, flatten, the classifier), as an `nnx.Module` to copy.

`model.name="nnx_cnn"` trains it like any model: configs/mnist_talk.py:nnx is
configs/mnist_talk.py with this model, the same parameter count (9,098 on MNIST).
NNX layers need their input sizes when they are built, so it takes `input_shape` (one
example, channels last; cnnjax passes it) and works out the classifier's input from it.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cnnjax.errors import ConfigError
from cnnjax.models.layers import max_pool


class Model(nnx.Module):

  def __init__(self, num_classes: int, input_shape: Sequence[int],
               conv_features: Sequence[int] = (8, 16), kernel_size: int = 3,
               pool_size: int = 2, dropout_rate: float = 0.0, dtype: Any = jnp.float32, *,
               rngs: nnx.Rngs):
    if not conv_features or min(conv_features) < 1:
      raise ConfigError("model.conv_features", f"needs one or more positive widths, got "
                        f"{tuple(conv_features)}")
    spatial, channels = tuple(input_shape[:-1]), input_shape[-1]
    if min(s // pool_size ** len(conv_features) for s in spatial) < 1:
      raise ConfigError("model.conv_features", f"{len(conv_features)} blocks pooling by "
                        f"{pool_size} shrink the {spatial} input below one cell")
    rank = len(spatial)
    self.pool_size = pool_size
    self.blocks = len(conv_features)
    for i, features in enumerate(conv_features):
      setattr(self, f"conv{i}", nnx.Conv(channels, features, (kernel_size,) * rank,
                                         padding="SAME", dtype=dtype, rngs=rngs))
      channels = features
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
    cells = math.prod(s // pool_size ** self.blocks for s in spatial)
    self.classifier = nnx.Linear(cells * channels, num_classes, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.blocks):
      x = nnx.relu(getattr(self, f"conv{i}")(x))
      self.sow(nnx.Intermediate, f"relu{i}", x)  # Feature maps for viz.
      x = max_pool(x, self.pool_size)
      self.sow(nnx.Intermediate, f"pool{i}", x)
    x = self.dropout(x.reshape((x.shape[0], -1)))
    return self.classifier(x).astype(jnp.float32)
