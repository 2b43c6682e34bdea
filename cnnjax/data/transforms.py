"""On-device transforms of uint8 batches, called inside the step functions."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy import ndimage


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


def rotate_scale(image: jax.Array, degrees: jax.Array, scale: jax.Array) -> jax.Array:
  """One 2-D image (H, W, C) rotated about its centre by `degrees` (clockwise as displayed,
  rows going down) and zoomed by `scale`: bilinear, zeros outside, float32."""
  height, width = image.shape[:2]
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32) - (height - 1) / 2,
                        jnp.arange(width, dtype=jnp.float32) - (width - 1) / 2, indexing="ij")
  angle = jnp.deg2rad(degrees)
  cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale  # Output pixel -> input pixel.
  coords = [cos * ys - sin * xs + (height - 1) / 2, sin * ys + cos * xs + (width - 1) / 2]
  return jnp.stack([ndimage.map_coordinates(image[..., c].astype(jnp.float32), coords, order=1,
                                            mode="constant", cval=0.0)
                    for c in range(image.shape[-1])], axis=-1)


def random_rotate_scale(images: jax.Array, keys: jax.Array, max_degrees: float,
                        max_scale: float, fill: float = 0.0) -> jax.Array:
  """Rotates each 2-D image (float, standardised) by up to `max_degrees` and zooms it by
  a factor in [1 - max_scale, 1 + max_scale] (see `rotate_scale`); `fill` is the value of
  the background that comes in from outside. One key per example. Runs after
  standardisation: rounding back to uint8 would turn float noise of a few ulps into whole
  pixel steps, and a batch split over devices would no longer train like one device."""
  if images.ndim != 4:
    raise ValueError(f"rotation and scaling take 2-D images (N, H, W, C), got {images.shape}")

  def warp_one(image, key):
    angle_key, scale_key = jax.random.split(key)
    degrees = jax.random.uniform(angle_key, (), minval=-max_degrees, maxval=max_degrees)
    scale = 1.0 + jax.random.uniform(scale_key, (), minval=-max_scale, maxval=max_scale)
    return rotate_scale(image - fill, degrees, scale) + fill

  return jax.vmap(warp_one)(images, keys)


def mix(x: jax.Array, targets: jax.Array, partner_x: jax.Array, partner_targets: jax.Array,
        keys: jax.Array, mixup_alpha: float, cutmix_alpha: float) -> tuple[jax.Array, jax.Array]:
  """Mixup and CutMix of each example with its partner (x: standardised (N, *spatial, C),
  targets: (N, classes) probabilities), one key per example.

  Mixup: lam * x + (1 - lam) * partner, lam ~ Beta(mixup_alpha, mixup_alpha). CutMix: a
  box covering a fraction 1 - lam of every spatial axis's product (each side scaled by
  (1 - lam) ** (1 / rank)), placed uniformly and clipped at the edges, is the partner's,
  lam ~ Beta(cutmix_alpha, cutmix_alpha); the targets take the fraction actually kept.
  With both alphas, each example takes one of the two with even odds.
  """
  spatial = x.shape[1:-1]

  def one(x, t, px, pt, key):
    choose, mixup_key, cutmix_key, place_key = jax.random.split(key, 4)
    outputs = []
    if mixup_alpha:
      lam = jax.random.beta(mixup_key, mixup_alpha, mixup_alpha)
      outputs.append((lam * x + (1 - lam) * px, lam))
    if cutmix_alpha:
      lam = jax.random.beta(cutmix_key, cutmix_alpha, cutmix_alpha)
      box = jnp.ones(spatial, bool)
      side = (1 - lam) ** (1 / len(spatial))
      centres = jax.random.uniform(place_key, (len(spatial),))
      for axis, (size, centre) in enumerate(zip(spatial, centres)):
        inside = jnp.abs(jnp.arange(size) + 0.5 - centre * size) < side * size / 2
        box &= inside.reshape([-1 if a == axis else 1 for a in range(len(spatial))])
      kept = 1 - jnp.mean(box.astype(jnp.float32))
      outputs.append((jnp.where(box[..., None], px, x), kept))
    (mixed, lam), other = outputs[0], outputs[1:]
    if other:
      use_other = jax.random.bernoulli(choose)
      mixed, lam = jnp.where(use_other, other[0][0], mixed), jnp.where(use_other, other[0][1], lam)
    return mixed, lam * t + (1 - lam) * pt

  return jax.vmap(one)(x, targets, partner_x, partner_targets, keys)
