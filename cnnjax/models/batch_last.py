"""The CNN's fast path on a CPU: conv blocks with the batch axis last, (C, *spatial, N).

`config.model.layout` ("auto", "batch_first", "batch_last") is the switch; the CNN of
`cnn.py` is the network, and `for_layout` swaps in `BatchLastCNN`, the same network (the
same parameters, names and initialisation, the same function up to float rounding) with
some conv blocks batch-last. Measured gains and profiles: docs/performance.md.

XLA's CPU loops vectorise the last axis. In (N, *spatial, C) a small block's arrays have a
few values there (1, 8, 16 channels); in (C, *spatial, N) every elementwise loop runs along
the batch, and a convolution is one matrix product of the kernel with the input's patches
(`batch_last_conv`), whose long side is what matrix kernels are good at. "auto" puts a
block batch-last on a CPU when it is small (at most BATCH_LAST_MAX_INPUTS inputs per output,
channels x kernel positions, and BATCH_LAST_MAX_FEATURES features); larger blocks and
accelerators keep XLA's own convolution. The array is transposed where consecutive blocks
differ, and a flatten head reads batch-last maps without transposing them (`FlattenDense`).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from functools import partial
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.models import cnn
from cnnjax.models.layers import BatchNorm, Dropout, max_pool

BATCH_LAST_MAX_INPUTS = 128
BATCH_LAST_MAX_FEATURES = 16


def block_batch_last(layout: str, channels: int, kernel: Sequence[int], features: int) -> bool:
  """Whether a conv block of `channels` inputs, `kernel` and `features` runs batch-last."""
  if layout != "auto":
    return layout == "batch_last"
  return (jax.default_backend() == "cpu" and features <= BATCH_LAST_MAX_FEATURES
          and channels * math.prod(kernel) <= BATCH_LAST_MAX_INPUTS)


def for_layout(model: nn.Module, input_shape: Sequence[int]) -> nn.Module:
  """`model`, or its batch-last form where its layout puts a conv block batch-last for
  inputs of `input_shape` (one example, channels last)."""
  if type(model) is not cnn.Model:
    return model
  kernels, _, _ = model.sizes(len(input_shape) - 1)
  channels = (input_shape[-1], *model.conv_features[:-1])
  if not any(block_batch_last(model.layout, c, k, f)
             for c, k, f in zip(channels, kernels, model.conv_features)):
    return model
  return BatchLastCNN(**_fields(model))


def batch_first(model: nn.Module) -> nn.Module:
  """The stock form of a model `for_layout` may have swapped."""
  return cnn.Model(**_fields(model)) if isinstance(model, BatchLastCNN) else model


def _fields(model: nn.Module) -> dict[str, Any]:
  return {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
          if f.init and f.name not in ("parent", "name")}


class BatchLastCNN(cnn.Model):
  """`cnn.Model` with its small conv blocks batch-last (see the module's docstring)."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
    rank = x.ndim - 2
    kernels, padding, pool = self.sizes(rank)
    pooled = max(pool) > 1
    batch_last = False  # The layout x is in: (N, *spatial, C), or (C, *spatial, N).
    # Swaps N and C; max_pool takes either layout (its spatial axes lie between).
    swap = lambda x: jnp.moveaxis(x, (0, -1), (-1, 0))
    as_given = lambda x: swap(x) if batch_last else x
    for i, (features, kernel) in enumerate(zip(self.conv_features, kernels)):
      channels = x.shape[0 if batch_last else -1]
      if batch_last != block_batch_last(self.layout, channels, kernel, features):
        x, batch_last = swap(x), not batch_last
      conv = BatchLastConv if batch_last else nn.Conv
      x = conv(features, kernel, padding=padding, use_bias=not self.batch_norm,
               dtype=self.dtype, name=f"conv{i}")(x)
      if pooled and self.pool_first:
        x = max_pool(x, pool)
      if self.batch_norm:
        axes = dict(feature_axis=0, batch_axis=-1) if batch_last else {}
        x = BatchNorm(use_running_average=not train, momentum=self.batch_norm_momentum,
                      axis_name=self.axis_name, dtype=self.dtype, name=f"bn{i}", **axes)(x, mask)
      x = nn.relu(x)
      self.sow("features", f"relu{i}", as_given(x))  # Batch-first, as cnn.Model sows them.
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


def _patches(a: jax.Array, kernel: Sequence[int], pads) -> jax.Array:
  """(C, *spatial, B) -> (kernel positions x C, *out, B): the shifted slices of the padded
  input, stacked along the first axis in the order of a reshaped (*kernel, C, F) kernel.
  Built one axis at a time, the last first: XLA copies the three slices of one axis, then
  three of those, faster than the nine slices of both at once."""
  zero = jnp.zeros((), a.dtype)
  a = jax.lax.pad(a, zero, [(0, 0, 0), *((low, high, 0) for low, high in pads), (0, 0, 0)])
  for axis in range(len(kernel), 0, -1):
    size = a.shape[axis] - kernel[axis - 1] + 1
    a = jnp.concatenate([jax.lax.slice_in_dim(a, o, o + size, axis=axis)
                         for o in range(kernel[axis - 1])], axis=0)
  return a


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def batch_last_conv(a: jax.Array, kernel: jax.Array, pads) -> jax.Array:
  """Stride-1 convolution of a batch-last array (C, *spatial, B) with a Flax kernel
  (*kernel, C, F), giving (F, *out, B): one matrix product of the kernel with the
  input's patches, batch and positions together as the long side.

  Its gradient is two more products of the same shape (kernel: patches times the output
  gradient, contracted over the long side; input: kernel times the output gradient, then
  the shifted slices added back), with the patches rebuilt rather than kept.
  """
  return _conv_forward(a, kernel, pads)[0]


def _conv_forward(a, kernel, pads):
  rank = kernel.ndim - 2
  patches = _patches(a, kernel.shape[:rank], pads)
  taps = kernel.reshape(-1, kernel.shape[-1])  # (positions x C, F)
  out = jnp.dot(taps.T, patches.reshape(patches.shape[0], -1))
  return out.reshape(kernel.shape[-1], *patches.shape[1:]), (a, kernel)


def _conv_backward(pads, residuals, g):
  a, kernel = residuals
  rank = kernel.ndim - 2
  size, channels = kernel.shape[:rank], a.shape[0]
  patches = _patches(a, size, pads)
  g2 = g.reshape(g.shape[0], -1)
  d_kernel = jax.lax.dot_general(patches.reshape(patches.shape[0], -1), g2,
                                 (((1,), (1,)), ((), ()))).reshape(kernel.shape)
  d_patches = jnp.dot(kernel.reshape(-1, kernel.shape[-1]), g2).reshape(-1, channels, *g.shape[1:])
  zero = jnp.zeros((), g.dtype)
  d_a = 0
  for t, offset in enumerate(itertools.product(*map(range, size))):
    # Output cell p read input cell p + offset - low: add the slice back there (negative
    # padding crops what came from the padding).
    widths = [(o - low, n - m - (o - low), 0)
              for o, (low, _), n, m in zip(offset, pads, a.shape[1:-1], g.shape[1:-1])]
    d_a = d_a + jax.lax.pad(d_patches[t], zero, [(0, 0, 0), *widths, (0, 0, 0)])
  return d_a, d_kernel


batch_last_conv.defvjp(_conv_forward, _conv_backward)


class BatchLastConv(nn.Module):
  """`nn.Conv` (stride 1, same parameters, names and initialisation) on batch-last
  arrays (C, *spatial, B): see `batch_last_conv`."""
  features: int
  kernel_size: tuple[int, ...]
  padding: Any = "SAME"
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, a: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel_size, a.shape[0], self.features), jnp.float32)
    if isinstance(self.padding, str):  # "SAME" or "VALID", as nn.Conv pads them.
      ones = (1,) * len(self.kernel_size)
      pads = jax.lax.padtype_to_pads(a.shape[1:-1], self.kernel_size, ones, self.padding)
    else:  # One size per axis, on both sides.
      pads = [(p, p) for p in self.padding]
    pads = tuple(map(tuple, pads))  # Hashable: a static argument of batch_last_conv.
    y = batch_last_conv(a.astype(self.dtype), kernel.astype(self.dtype), pads)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype).reshape((-1,) + (1,) * (y.ndim - 1))
    return y


class FlattenDense(nn.Module):
  """`nn.Dense` on the flattened batch-first features (N, *spatial x C) of a batch-last
  array (C, *spatial, N), without transposing it: the same parameters (kernel rows in
  (*spatial, C) order), the kernel's rows put in the array's order instead."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, a: jax.Array) -> jax.Array:
    channels, spatial, batch = a.shape[0], a.shape[1:-1], a.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (math.prod(spatial) * channels, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    rows = jnp.moveaxis(kernel.reshape(*spatial, channels, self.features), -2, 0)
    y = jnp.dot(rows.reshape(-1, self.features).T.astype(self.dtype),
                a.reshape(-1, batch).astype(self.dtype))
    return y.T + bias.astype(self.dtype)
