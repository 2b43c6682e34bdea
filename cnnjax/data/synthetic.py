"""Synthetic noisy 3-D shapes (sphere, cube, cross) of random size and position, generated
from a seed: a volumetric data set for demos and tests that needs no file."""
from __future__ import annotations

import dataclasses

import numpy as np

from cnnjax import data
from cnnjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Source:
  """SYNTHETIC volumes of `size`^3 voxels."""
  train_volumes: int = 600
  test_volumes: int = 300
  size: int = 16  # Volumes of size^3 voxels.
  noise: float = 0.35  # Gaussian noise, relative to the shapes' intensity.
  seed: int = 0  # The data set's own seed (config.seed does not change it).

  def __post_init__(self):
    for field in ("train_volumes", "test_volumes"):
      if getattr(self, field) < 1:
        raise ConfigError(f"data.{field}", "must be >= 1")
    if self.size < 4:
      raise ConfigError("data.size", "must be >= 4 voxels")

  def load(self, num_classes: int) -> data.Splits:
    del num_classes  # data.load checks the labels.
    return data.Splits(*synthetic_volumes(self.train_volumes, self.size, self.noise, self.seed),
                       *synthetic_volumes(self.test_volumes, self.size, self.noise, self.seed + 1),
                       location=f"synthetic:volumes(seed={self.seed})", class_names=SHAPES)


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
