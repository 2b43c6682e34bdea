"""On-device transforms of uint8 batches, called inside the step functions."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def standardize(images: jax.Array, mean: float, std: float) -> jax.Array:
  """uint8 pixels are scaled to [0, 1]; then (x - mean) / std, as float32."""
  x = images.astype(jnp.float32)
  if images.dtype == jnp.uint8:
    x = x / 255.0
  return (x - mean) / std


def random_shift(images: jax.Array, keys: jax.Array, max_shift: int) -> jax.Array:
  """Translates each example by up to `max_shift` pixels along every spatial axis,
  filling with zeros (the background before standardisation). One key per example."""
  spatial = images.ndim - 2

  def shift_one(image, key):
    padded = jnp.pad(image, [(max_shift, max_shift)] * spatial + [(0, 0)])
    offsets = jax.random.randint(key, (spatial,), 0, 2 * max_shift + 1)
    return jax.lax.dynamic_slice(padded, (*offsets, 0), image.shape)

  return jax.vmap(shift_one)(images, keys)
