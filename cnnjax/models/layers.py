"""Layers shared by the model families."""
from __future__ import annotations

import itertools
import math
from functools import partial
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn


def max_pool(x: jax.Array, window) -> jax.Array:
  """Non-overlapping max pooling over the spatial axes of (N, *spatial, C); `window` is
  one size for every axis or one per axis.

  Same values as `nn.max_pool(x, window, strides=window, padding='VALID')` (a trailing
  remainder is dropped), and the same gradient wherever a window has one maximum.
  Pools one axis at a time, as the elementwise maximum of the window's slices (a
  reshape splits the axis into (cells, window)): XLA's CPU backend runs `reduce_window`
  and its gradient, and the extra reduction with which a `max` reduction's gradient
  counts tied maxima, much slower (docs/performance.md). Here XLA fuses everything into
  elementwise loops; tied maxima share the gradient (pairwise halves, as `jnp.maximum`
  does).
  """
  spatial = x.shape[1:-1]
  windows = (window,) * len(spatial) if isinstance(window, int) else tuple(window)
  for axis, w in enumerate(windows, start=1):
    if w == 1:
      continue
    kept = x.shape[axis] // w * w
    x = jax.lax.slice_in_dim(x, 0, kept, axis=axis)
    x = x.reshape(x.shape[:axis] + (kept // w, w) + x.shape[axis + 1:])
    parts = [jax.lax.index_in_dim(x, i, axis=axis + 1, keepdims=False) for i in range(w)]
    while len(parts) > 1:  # A balanced tree of pairwise maxima.
      pairs = [jnp.maximum(a, b) for a, b in zip(parts[::2], parts[1::2])]
      parts = pairs + parts[len(pairs) * 2:]
    x = parts[0]
  return x


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


def example_ids(batch: int, axis_name: str | None) -> jax.Array:
  """Each local example's position in the global batch (devices hold consecutive slices)."""
  offset = jax.lax.axis_index(axis_name) * batch if axis_name else 0
  return offset + jnp.arange(batch)


def example_keys(key: jax.Array, batch: int, axis_name: str | None) -> jax.Array:
  """One key per example, folded from its global position: randomness that depends on
  the global batch only, not on how it is split over devices."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(example_ids(batch, axis_name))


class Dropout(nn.Module):
  """Inverted dropout with a mask drawn per example from its global batch position.

  Each device draws different masks (its examples differ), and 1 device or N devices
  give identical masks for the same global batch, so a run does not depend on the
  device count. Uses the 'dropout' RNG stream like `nn.Dropout`.
  """
  rate: float
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    keys = example_keys(self.make_rng("dropout"), x.shape[0], self.axis_name)
    keep = jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - self.rate, x.shape[1:]))(keys)
    return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x))


class BatchNorm(nn.Module):
  """BatchNorm whose statistics are exact over the global batch, padding excluded.

  Same variables and defaults as `nn.BatchNorm` (scale, bias; batch_stats mean, var).
  Unlike it, statistics come from sums and counts added over the device axis, not from
  per-device means averaged: with a `mask` (padded batches, config.pad_batch) devices
  hold different numbers of real examples, and an average of their means would weight
  them wrongly. Features are the last axis, or the first with `batch_last` (C, ..., N).
  """
  use_running_average: bool
  momentum: float = 0.99
  epsilon: float = 1e-5
  axis_name: str | None = None
  dtype: Any = jnp.float32
  batch_last: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    feature_axis, batch_axis = (0, x.ndim - 1) if self.batch_last else (x.ndim - 1, 0)
    features = x.shape[feature_axis]
    along = lambda axis, v: v.reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(features, jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones(features, jnp.float32))
    scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      xf = x.astype(jnp.float32)
      axes = tuple(a for a in range(x.ndim) if a != feature_axis)
      batch = x.shape[batch_axis]
      weight = jnp.ones(batch, jnp.float32) if mask is None else mask.astype(jnp.float32)
      weight = along(batch_axis, weight)
      sums = (jnp.sum(xf * weight, axes), jnp.sum(xf * xf * weight, axes),
              jnp.sum(weight) * (xf.size // (batch * features)))
      if self.axis_name:
        sums = jax.lax.psum(sums, self.axis_name)
      mean = sums[0] / sums[2]
      var = jnp.maximum(sums[1] / sums[2] - mean * mean, 0.0)
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    y = ((x.astype(jnp.float32) - along(feature_axis, mean))
         * along(feature_axis, jax.lax.rsqrt(var + self.epsilon)) * along(feature_axis, scale)
         + along(feature_axis, bias))
    return y.astype(self.dtype)
