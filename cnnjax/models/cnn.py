"""Convolutional networks of any spatial rank (1-D series, 2-D images, 3-D volumes).

Conv blocks (conv, [BatchNorm], ReLU, max pool), then a head (flatten, or global
average pooling) with dense layers. The talk's CNN is `conv_features=(8, 16)`, kernel 3,
pool 2, flatten; the FCN of Wang et al. (2017) for time series is `conv_features=(128,
256, 128)`, `kernel_sizes=(8, 5, 3)`, BatchNorm, no pooling, global average pooling.
Sizes come from the config only and Flax infers every input size, so 8 -> 9 channels
or another block is a config change. The rank comes from the data.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import ConfigError
from cnnjax.models.layers import BatchLastConv, BatchNorm, Dropout, FlattenDense, max_pool


def per_axis(value, rank: int, field: str) -> tuple[int, ...]:
  """One number for every spatial axis, or one per axis."""
  if isinstance(value, int):
    return (value,) * rank
  value = tuple(value)
  if len(value) != rank:
    raise ConfigError(field, f"{value} gives {len(value)} sizes for {rank}-D data")
  return value


class CNN(nn.Module):
  num_classes: int
  conv_features: Sequence[int]
  kernel_sizes: Sequence[Any] = (3,)  # Per block: an int or a tuple per axis.
  pool_size: Any = 2
  padding: Any = "SAME"
  dense_features: Sequence[int] = ()
  head: str = "flatten"
  batch_norm: bool = False
  pool_first: bool = False  # conv, pool, [BN], ReLU instead of conv, [BN], ReLU, pool.
  batch_norm_momentum: float = 0.9
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32  # Compute dtype (bfloat16 on accelerators); parameters stay float32.
  axis_name: str | None = None  # Device axis over which BatchNorm averages statistics.
  layout: str = "auto"  # Of the conv blocks: see LAYOUTS.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
    """`mask` marks the real examples of a padded batch (for BatchNorm's statistics)."""
    rank = x.ndim - 2
    pool = per_axis(self.pool_size, rank, "model.pool_size")
    padding = self.padding if isinstance(self.padding, str) else per_axis(self.padding, rank, "model.padding")
    pooled = max(pool) > 1
    batch_last = False  # The layout x is in: (N, *spatial, C), or (C, *spatial, N).
    # Swaps N and C; max_pool takes either layout (its spatial axes lie between).
    swap = lambda x: jnp.moveaxis(x, (0, -1), (-1, 0))
    as_given = lambda x: swap(x) if batch_last else x
    for i, (features, kernel) in enumerate(zip(self.conv_features, self.kernel_sizes)):
      kernel = per_axis(kernel, rank, "model.kernel_size")
      channels = x.shape[0 if batch_last else -1]
      if batch_last != block_batch_last(self.layout, channels, kernel, features):
        x, batch_last = swap(x), not batch_last
      conv = BatchLastConv if batch_last else nn.Conv
      x = conv(features, kernel, padding=padding, use_bias=not self.batch_norm,
               dtype=self.dtype, name=f"conv{i}")(x)
      if pooled and self.pool_first:
        x = max_pool(x, pool)
      if self.batch_norm:
        x = BatchNorm(use_running_average=not train, momentum=self.batch_norm_momentum,
                      axis_name=self.axis_name, dtype=self.dtype, batch_last=batch_last,
                      name=f"bn{i}")(x, mask)
      x = nn.relu(x)
      self.sow("features", f"relu{i}", as_given(x))  # Kept only when "features" is mutable (viz).
      if pooled and not self.pool_first:
        x = max_pool(x, pool)
      if pooled:
        self.sow("features", f"pool{i}", as_given(x))
    layers = [(f, f"dense{i}") for i, f in enumerate(self.dense_features)]
    layers.append((self.num_classes, "classifier"))
    if batch_last and self.head == "flatten" and (self.dropout_rate == 0.0 or not train):
      # The first dense layer reads the batch-last maps as they are (no dropout before it).
      features, name = layers.pop(0)
      x = FlattenDense(features, dtype=self.dtype, name=name)(x)
      x = nn.relu(x) if layers else x
    else:
      x = as_given(x)
      x = x.mean(axis=tuple(range(1, rank + 1))) if self.head == "global_avg" else x.reshape((x.shape[0], -1))
    for features, name in layers:
      x = Dropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
      x = nn.Dense(features, dtype=self.dtype, name=name)(x)
      x = x if name == "classifier" else nn.relu(x)
    return x.astype(jnp.float32)

# Where each conv block puts the batch axis. "batch_first": (N, *spatial, C), Flax's
# convolution (XLA's). "batch_last": (C, *spatial, N), the convolution as one matrix
# product over patches (layers.batch_last_conv), where every elementwise loop runs along
# the batch. "auto": on a CPU, batch_last for a small block (at most BATCH_LAST_MAX_INPUTS
# inputs per output, channels x kernel positions, and BATCH_LAST_MAX_FEATURES features),
# such as a first layer on one channel or the talk's CNN, where XLA's convolutions and its
# loops over a few channels are slow; batch_first for larger blocks (there XLA's own are
# faster, measured on the MNIST configs: see docs/performance.md) and on accelerators.
# The array is transposed where consecutive blocks differ. Same parameters in every layout.
LAYOUTS = ("auto", "batch_first", "batch_last")
BATCH_LAST_MAX_INPUTS = 128
BATCH_LAST_MAX_FEATURES = 16


def block_batch_last(layout: str, channels: int, kernel: Sequence[int], features: int) -> bool:
  if layout != "auto":
    return layout == "batch_last"
  return (jax.default_backend() == "cpu" and features <= BATCH_LAST_MAX_FEATURES
          and channels * math.prod(kernel) <= BATCH_LAST_MAX_INPUTS)


def _sizes(value) -> list[int]:
  return [value] if isinstance(value, int) else list(value)


def validate_config(c) -> None:
  if not c.conv_features or any(f < 1 for f in c.conv_features):
    raise ConfigError("model.conv_features", f"needs one or more positive widths, got {tuple(c.conv_features)}")
  if c.kernel_sizes and len(c.kernel_sizes) != len(c.conv_features):
    raise ConfigError("model.kernel_sizes", f"gives {len(c.kernel_sizes)} sizes for "
                      f"{len(c.conv_features)} conv blocks (config.model.conv_features)")
  for field, values in (("model.kernel_size", _sizes(c.kernel_size)),
                        ("model.kernel_sizes", [k for ks in c.kernel_sizes for k in _sizes(ks)]),
                        ("model.pool_size", _sizes(c.pool_size))):
    if any(not isinstance(v, int) or v < 1 for v in values):
      raise ConfigError(field, f"sizes must be positive integers, got {values}")
  if not (c.padding in ("SAME", "VALID") or all(isinstance(p, int) and p >= 0 for p in _sizes(c.padding))):
    raise ConfigError("model.padding", f"must be 'SAME', 'VALID' or sizes >= 0, got {c.padding!r}")
  if c.head not in ("flatten", "global_avg"):
    raise ConfigError("model.head", f"{c.head!r} is not one of 'flatten', 'global_avg'")
  if any(f < 1 for f in c.dense_features):
    raise ConfigError("model.dense_features", f"widths must be positive, got {tuple(c.dense_features)}")
  if not 0.0 <= c.dropout_rate < 1.0:
    raise ConfigError("model.dropout_rate", f"must be in [0, 1), got {c.dropout_rate}")
  if c.layout not in LAYOUTS:
    raise ConfigError("model.layout", f"{c.layout!r} is not one of {', '.join(map(repr, LAYOUTS))}")
  if not 0.0 <= c.batch_norm_momentum < 1.0:
    raise ConfigError("model.batch_norm_momentum", f"must be in [0, 1), got {c.batch_norm_momentum}")


def _kernels(c) -> tuple:
  return tuple(c.kernel_sizes) if c.kernel_sizes else (c.kernel_size,) * len(c.conv_features)


def check_input(c, input_shape: Sequence[int]) -> None:
  """Fails, naming the field, when convs or pooling shrink a feature map below one cell."""
  spatial = tuple(input_shape[:-1])
  rank = len(spatial)
  pool = per_axis(c.pool_size, rank, "model.pool_size")
  size = spatial
  text = lambda s: "x".join(map(str, s))
  for block, kernel in enumerate(_kernels(c)):
    field = "model.kernel_sizes" if c.kernel_sizes else "model.kernel_size"
    k = per_axis(kernel, rank, field)
    if c.padding == "VALID" or not isinstance(c.padding, str):
      pad = (0,) * rank if c.padding == "VALID" else per_axis(c.padding, rank, "model.padding")
      size = tuple(s + 2 * p - kk + 1 for s, p, kk in zip(size, pad, k))
      if min(size) < 1:
        raise ConfigError(field, f"block {block + 1}'s kernel {text(k)} with padding "
                          f"{c.padding!r} does not fit the feature map left from the "
                          f"{text(spatial)} input")
    if max(pool) > 1 and any(s < p for s, p in zip(size, pool)):
      raise ConfigError(
          "model.conv_features",
          f"{len(c.conv_features)} conv blocks pooling by config.model.pool_size={c.pool_size} "
          f"need a larger input: block {block + 1} gets a {text(size)} feature map from the "
          f"{text(spatial)} input; use fewer blocks or a smaller pool_size")
    size = tuple(s // p for s, p in zip(size, pool))


def build(c, num_classes: int, axis_name: str | None = None) -> CNN:
  return CNN(num_classes=num_classes, conv_features=tuple(c.conv_features),
             kernel_sizes=_kernels(c), pool_size=c.pool_size, padding=c.padding,
             dense_features=tuple(c.dense_features), head=c.head, batch_norm=c.batch_norm,
             pool_first=c.pool_first, batch_norm_momentum=c.batch_norm_momentum,
             dropout_rate=c.dropout_rate, layout=c.layout,
             dtype=jnp.dtype(c.dtype), axis_name=axis_name)
