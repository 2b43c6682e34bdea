"""Convolutional networks of any spatial rank (1-D series, 2-D images, 3-D volumes).

Conv blocks (conv, [BatchNorm], ReLU, max pool), then a head (flatten, or global
average pooling) with dense layers. The defaults are the talk's CNN: conv 8 and 16
(3x3, SAME), max pool 2, flatten, the classifier. The FCN of Wang et al. (2017) for time
series is `conv_features=(128, 256, 128)`, `kernel_sizes=(8, 5, 3)`, BatchNorm, no
pooling, global average pooling. Flax infers every input size, so 8 -> 9 channels or
another block is a config change; the rank comes from the data.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import ConfigError
from cnnjax.models.layers import BatchNorm, Dropout, max_pool, per_axis

LAYOUTS = ("auto", "batch_first", "batch_last")
HEADS = ("flatten", "global_avg")


class Model(nn.Module):
  num_classes: int
  conv_features: Sequence[int] = (8, 16)  # One conv block per entry: its filters.
  kernel_size: Any = 3  # Of every block: one size, or one per spatial axis.
  kernel_sizes: Sequence[Any] = ()  # One kernel size per block; () = kernel_size for all.
  padding: Any = "SAME"  # "SAME", "VALID", or a size (or one per axis) on both sides.
  pool_size: Any = 2  # Max pool window = stride, one size or one per axis; 1 = none.
  # conv, pool, [BatchNorm], ReLU instead of conv, [BatchNorm], ReLU, pool: BatchNorm and
  # ReLU then touch a quarter of the values (2x2 pools). With BatchNorm a different
  # network (its statistics are the pooled maps'), without it the same function.
  pool_first: bool = False
  head: str = "flatten"  # "flatten", or "global_avg" (global average pooling).
  dense_features: Sequence[int] = ()  # Hidden dense layers before the classifier.
  batch_norm: bool = False
  batch_norm_momentum: float = 0.9  # Decay of BatchNorm's running statistics.
  dropout_rate: float = 0.0  # Before each dense layer.
  # Where the conv blocks keep the batch axis on a CPU: "auto", "batch_first" or
  # "batch_last" (cnnjax/models/batch_last.py). Speed only: the parameters and the
  # function are the same in every layout.
  layout: str = "auto"
  dtype: Any = jnp.float32  # Compute dtype; parameters stay float32.
  axis_name: str | None = None  # Device axis over which BatchNorm and dropout see the batch.

  def __post_init__(self):
    _check_fields(self)
    super().__post_init__()

  def kernels(self) -> tuple:
    """Each block's kernel size, as configured (an int or one per axis)."""
    return tuple(self.kernel_sizes) or (self.kernel_size,) * len(self.conv_features)

  def check_input(self, input_shape: Sequence[int]) -> None:
    """Fails, naming the field, when convs or pooling shrink a feature map below one cell."""
    spatial = tuple(input_shape[:-1])
    rank = len(spatial)
    pool = per_axis(self.pool_size, rank, "model.pool_size")
    field = "model.kernel_sizes" if self.kernel_sizes else "model.kernel_size"
    text = lambda s: "x".join(map(str, s))
    size = spatial
    for block, kernel in enumerate(self.kernels()):
      k = per_axis(kernel, rank, field)
      if not isinstance(self.padding, str) or self.padding == "VALID":
        pad = (0,) * rank if self.padding == "VALID" else per_axis(self.padding, rank, "model.padding")
        size = tuple(s + 2 * p - kk + 1 for s, p, kk in zip(size, pad, k))
        if min(size) < 1:
          raise ConfigError(field, f"block {block + 1}'s kernel {text(k)} with padding "
                            f"{self.padding!r} does not fit the feature map left from the "
                            f"{text(spatial)} input")
      if max(pool) > 1 and any(s < p for s, p in zip(size, pool)):
        raise ConfigError(
            "model.conv_features",
            f"{len(self.conv_features)} conv blocks pooling by config.model.pool_size="
            f"{self.pool_size} need a larger input: block {block + 1} gets a {text(size)} "
            f"feature map from the {text(spatial)} input; use fewer blocks or a smaller pool_size")
      size = tuple(s // p for s, p in zip(size, pool))

  def sizes(self, rank: int) -> tuple[list, Any, tuple[int, ...]]:
    """Per block kernel sizes, the padding and the pool window, one size per axis."""
    kernels = [per_axis(k, rank, "model.kernel_size") for k in self.kernels()]
    padding = self.padding if isinstance(self.padding, str) else per_axis(self.padding, rank, "model.padding")
    return kernels, padding, per_axis(self.pool_size, rank, "model.pool_size")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
    """`mask` marks the real examples of a padded batch (for BatchNorm's statistics)."""
    rank = x.ndim - 2
    kernels, padding, pool = self.sizes(rank)
    pooled = max(pool) > 1
    for i, (features, kernel) in enumerate(zip(self.conv_features, kernels)):
      x = nn.Conv(features, kernel, padding=padding, use_bias=not self.batch_norm,
                  dtype=self.dtype, name=f"conv{i}")(x)
      if pooled and self.pool_first:
        x = max_pool(x, pool)
      if self.batch_norm:
        x = BatchNorm(use_running_average=not train, momentum=self.batch_norm_momentum,
                      axis_name=self.axis_name, dtype=self.dtype, name=f"bn{i}")(x, mask)
      x = nn.relu(x)
      self.sow("features", f"relu{i}", x)  # Kept only when "features" is mutable (viz).
      if pooled and not self.pool_first:
        x = max_pool(x, pool)
      if pooled:
        self.sow("features", f"pool{i}", x)
    if self.head == "global_avg":
      x = x.mean(axis=tuple(range(1, rank + 1)))
    else:
      x = x.reshape((x.shape[0], -1))
    for i, features in enumerate(self.dense_features):
      x = Dropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
      x = nn.relu(nn.Dense(features, dtype=self.dtype, name=f"dense{i}")(x))
    x = Dropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x).astype(jnp.float32)


def _sizes(value) -> list:
  return [value] if isinstance(value, int) else list(value)


def _check_fields(m: Model) -> None:
  if not m.conv_features or any(f < 1 for f in m.conv_features):
    raise ConfigError("model.conv_features", f"needs one or more positive widths, got {tuple(m.conv_features)}")
  if m.kernel_sizes and len(m.kernel_sizes) != len(m.conv_features):
    raise ConfigError("model.kernel_sizes", f"gives {len(m.kernel_sizes)} sizes for "
                      f"{len(m.conv_features)} conv blocks (config.model.conv_features)")
  for field, values in (("model.kernel_size", _sizes(m.kernel_size)),
                        ("model.kernel_sizes", [k for ks in m.kernel_sizes for k in _sizes(ks)]),
                        ("model.pool_size", _sizes(m.pool_size))):
    if any(not isinstance(v, int) or v < 1 for v in values):
      raise ConfigError(field, f"sizes must be positive integers, got {values}")
  if not (m.padding in ("SAME", "VALID") or all(isinstance(p, int) and p >= 0 for p in _sizes(m.padding))):
    raise ConfigError("model.padding", f"must be 'SAME', 'VALID' or sizes >= 0, got {m.padding!r}")
  if m.head not in HEADS:
    raise ConfigError("model.head", f"{m.head!r} is not one of {', '.join(map(repr, HEADS))}")
  if any(f < 1 for f in m.dense_features):
    raise ConfigError("model.dense_features", f"widths must be positive, got {tuple(m.dense_features)}")
  if not 0.0 <= m.dropout_rate < 1.0:
    raise ConfigError("model.dropout_rate", f"must be in [0, 1), got {m.dropout_rate}")
  if m.layout not in LAYOUTS:
    raise ConfigError("model.layout", f"{m.layout!r} is not one of {', '.join(map(repr, LAYOUTS))}")
  if not 0.0 <= m.batch_norm_momentum < 1.0:
    raise ConfigError("model.batch_norm_momentum", f"must be in [0, 1), got {m.batch_norm_momentum}")
