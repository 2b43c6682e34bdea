"""Volumetric classification sets: MedMNIST-3D style `.npz` files, and a synthetic set.

The `.npz` layout is MedMNIST's: `train_images` (N, D, H, W[, C]) and `train_labels`
(N,) or (N, 1), the same for `test_` (and `val_`, which is not used here).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnjax.errors import DataError


def load_npz(path: Path):
  """(train_x, train_y, test_x, test_y) with volumes as (N, D, H, W, C)."""
  if not path.is_file():
    raise DataError(f"{path}: no such .npz file")
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError) as e:
    raise DataError(f"{path}: not a readable .npz file: {e}") from e
  out = []
  for split in ("train", "test"):
    for kind in ("images", "labels"):
      if f"{split}_{kind}" not in arrays:
        raise DataError(f"{path}: no '{split}_{kind}' array (has {', '.join(sorted(arrays))})")
    x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"].reshape(-1)
    if x.ndim == 4:
      x = x[..., None]
    if x.ndim != 5:
      raise DataError(f"{path}: {split}_images has shape {x.shape}; expected (N, D, H, W[, C])")
    if len(x) != len(y):
      raise DataError(f"{path}: {len(x)} {split} volumes but {len(y)} labels")
    out += [x, y.astype(np.int32)]
  if out[0].shape[1:] != out[2].shape[1:]:
    raise DataError(f"{path}: train volumes are {out[0].shape[1:]}, test volumes {out[2].shape[1:]}")
  return tuple(out)


SHAPES = ("sphere", "cube", "cross")


def synthetic_volumes(n: int, size: int, noise: float, seed: int):
  """SYNTHETIC data: noisy 3-D shapes (sphere, cube, cross) of random size and position.

  Returns uint8 volumes (n, size, size, size, 1) and labels (n,) indexing SHAPES.
  """
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, len(SHAPES), n).astype(np.int32)
  grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1).astype(np.float32)
  volumes = np.empty((n, size, size, size), np.float32)
  for i, label in enumerate(labels):
    radius = rng.uniform(0.18, 0.32) * size
    center = rng.uniform(radius, size - 1 - radius, 3)
    d = grid - center
    if label == 0:
      shape = np.sqrt((d ** 2).sum(-1)) <= radius
    elif label == 1:
      shape = np.abs(d).max(-1) <= radius * 0.8
    else:
      thin = np.sort(np.abs(d), axis=-1)
      shape = (thin[..., 1] <= radius * 0.3) & (thin[..., 2] <= radius)
    volumes[i] = shape + rng.normal(0.0, noise, shape.shape)
  return np.clip(volumes * 160 + 40, 0, 255).astype(np.uint8)[..., None], labels
