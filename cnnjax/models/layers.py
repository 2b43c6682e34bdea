"""Layers shared by the model families."""
from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn


def max_pool(x: jax.Array, window) -> jax.Array:
  """Non-overlapping max pooling over the spatial axes of (N, *spatial, C); `window` is
  one size for every axis or one per axis.

  Same values as `nn.max_pool(x, window, strides=window, padding='VALID')` (a trailing
  remainder is dropped), written as reshape + max because XLA's CPU backend runs
  `reduce_window` and its gradient several times slower. The gradient goes to the first
  maximum of each window, as `nn.max_pool`'s (and PyTorch's) does, ties included; the
  gradient of a plain `max` would split it among tied maxima and pays for counting them
  (a third of the talk CNN's step on CPU).
  """
  spatial = x.shape[1:-1]
  windows = (window,) * len(spatial) if isinstance(window, int) else tuple(window)
  kept = tuple(s // w * w for s, w in zip(spatial, windows))
  x = x[(slice(None),) + tuple(slice(0, k) for k in kept)]
  split = [x.shape[0]]
  for k, w in zip(kept, windows):
    split += [k // w, w]
  return _window_max(x.reshape(split + [x.shape[-1]]))


def _window_axes(ndim: int) -> tuple[int, ...]:
  """The window axes of (N, s1, w1, s2, w2, ..., C)."""
  return tuple(range(2, ndim - 1, 2))


@jax.custom_vjp
def _window_max(x: jax.Array) -> jax.Array:
  return x.max(axis=_window_axes(x.ndim))


def _window_max_fwd(x):
  y = _window_max(x)
  return y, (x, y)


def _window_max_bwd(residuals, g):
  x, y = residuals
  axes = _window_axes(x.ndim)
  expand = lambda a: jnp.expand_dims(a, axes)
  y, g = expand(y), expand(g)
  taken = jnp.zeros(y.shape, bool)
  parts = {}
  for position in itertools.product(*(range(x.shape[a]) for a in axes)):
    index = [slice(None)] * x.ndim
    for a, i in zip(axes, position):
      index[a] = slice(i, i + 1)
    first = (x[tuple(index)] == y) & ~taken  # The first maximum in row-major order.
    taken = taken | first
    parts[position] = jnp.where(first, g, jnp.zeros_like(g))
  return (_assemble(parts, axes, ()),)


def _assemble(parts: dict, axes: tuple[int, ...], prefix: tuple[int, ...]) -> jax.Array:
  """The window slices `parts[(i, j, ...)]` put back together along the window axes."""
  if len(prefix) == len(axes):
    return parts[prefix]
  axis = axes[len(prefix)]
  count = 1 + max(p[len(prefix)] for p in parts)
  return jnp.concatenate([_assemble(parts, axes, prefix + (i,)) for i in range(count)], axis)


_window_max.defvjp(_window_max_fwd, _window_max_bwd)


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
  them wrongly.
  """
  use_running_average: bool
  momentum: float = 0.99
  epsilon: float = 1e-5
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    features = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(features, jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones(features, jnp.float32))
    scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      xf = x.astype(jnp.float32)
      axes = tuple(range(x.ndim - 1))
      weight = jnp.ones(x.shape[:1], jnp.float32) if mask is None else mask.astype(jnp.float32)
      weight = weight.reshape((-1,) + (1,) * (x.ndim - 1))
      sums = (jnp.sum(xf * weight, axes), jnp.sum(xf * xf * weight, axes),
              jnp.sum(weight) * (xf.size // (x.shape[0] * features)))
      if self.axis_name:
        sums = jax.lax.psum(sums, self.axis_name)
      mean = sums[0] / sums[2]
      var = jnp.maximum(sums[1] / sums[2] - mean * mean, 0.0)
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    y = (x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
    return y.astype(self.dtype)
