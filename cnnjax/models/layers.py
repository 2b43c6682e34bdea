"""Layers shared by the model families."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn


def max_pool(x: jax.Array, window) -> jax.Array:
  """Non-overlapping max pooling over the spatial axes of (N, *spatial, C); `window` is
  one size for every axis or one per axis.

  Same result as `nn.max_pool(x, window, strides=window, padding='VALID')` (a trailing
  remainder is dropped), written as reshape + max because XLA's CPU backend runs
  `reduce_window` and its gradient several times slower than this.
  """
  spatial = x.shape[1:-1]
  windows = (window,) * len(spatial) if isinstance(window, int) else tuple(window)
  kept = tuple(s // w * w for s, w in zip(spatial, windows))
  x = x[(slice(None),) + tuple(slice(0, k) for k in kept)]
  split = [x.shape[0]]
  for k, w in zip(kept, windows):
    split += [k // w, w]
  x = x.reshape(split + [x.shape[-1]])
  return x.max(axis=tuple(range(2, 2 * len(spatial) + 1, 2)))


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
