"""Layers shared by the model families: max pooling, and dropout and BatchNorm that follow
the global batch, so that a run gives the same results on 1 or N devices."""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import ConfigError


def per_axis(value, rank: int, field: str) -> tuple[int, ...]:
  """A size given as one number for every spatial axis, or one per axis; `field` names
  the config field in the error."""
  if isinstance(value, int):
    return (value,) * rank
  value = tuple(value)
  if len(value) != rank:
    raise ConfigError(field, f"{value} gives {len(value)} sizes for {rank}-D data")
  return value


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


# (index, count) of the micro-batch being traced (config.accumulate_steps); None = whole batch.
_MICRO_BATCH = contextvars.ContextVar("micro_batch", default=None)


@contextlib.contextmanager
def micro_batch(index, count: int):
  """While tracing: the examples are micro-batch `index` (possibly traced) of `count`
  equal consecutive parts of each device's batch, so `example_ids` still gives their
  positions in the global batch (dropout then draws the masks of the whole batch)."""
  token = _MICRO_BATCH.set((index, count))
  try:
    yield
  finally:
    _MICRO_BATCH.reset(token)


def example_ids(batch: int, axis_name: str | None) -> jax.Array:
  """Each local example's position in the global batch (devices hold consecutive slices,
  and within a device, micro-batches do)."""
  part = jax.lax.axis_index(axis_name) if axis_name else 0
  micro = _MICRO_BATCH.get()
  if micro is not None:
    part = part * micro[1] + micro[0]
  return part * batch + jnp.arange(batch)


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
  them wrongly. Features lie along `feature_axis`, examples along `batch_axis`.
  """
  use_running_average: bool
  momentum: float = 0.99
  epsilon: float = 1e-5
  axis_name: str | None = None
  dtype: Any = jnp.float32
  feature_axis: int = -1
  batch_axis: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    feature_axis, batch_axis = self.feature_axis % x.ndim, self.batch_axis % x.ndim
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
