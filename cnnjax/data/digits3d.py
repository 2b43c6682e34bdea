"""Volumetric digits made from MNIST (the idea of the "3D MNIST" set), deterministically:
each digit, scaled to the cube's side, is extruded into a slab of `thickness` voxels,
rotated by a random 3-D rotation (three angles, each uniform in +-`max_rotation`
degrees, from a seed per example) and resampled into a `size`^3 cube, with optional
voxel noise. Labels and the train/test split are MNIST's.

The set is built once into the data cache under a key of its field values and of the
MNIST files' contents: a changed field (or other IDX files) builds a new set, never
reuses a stale one. The same example is the same volume on every machine, whatever the
order, batch or device count, since each is a function of (seed, split, index) alone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from cnnjax import data
from cnnjax.data import fetch, idx
from cnnjax.errors import ConfigError, DataError

VERSION = 1  # Of the construction below: part of the cache key.
SPLITS = {"train": 0, "test": 1}


@dataclasses.dataclass(frozen=True)
class Source:
  """MNIST digits as rotated slabs in a cube of `size`^3 voxels."""
  dir: str = ""  # The MNIST IDX folder: "" = $CNNJAX_DATA_DIR, else the cache (as source "idx").
  download: bool = True  # Fetch MNIST into the cache when found nowhere (as source "idx").
  size: int = 16  # The cube's side in voxels; the 28x28 digit is scaled to size x size.
  thickness: float = 4.0  # The slab's thickness in voxels, along the cube's first axis.
  max_rotation: float = 45.0  # Degrees: each of three rotation angles is uniform in +-this.
  noise: float = 0.0  # Gaussian voxel noise, as a fraction of full intensity.
  seed: int = 0  # The set's own seed (config.seed does not change it).

  def __post_init__(self):
    if not isinstance(self.size, int) or self.size < 8:
      raise ConfigError("data.size", f"must be an integer >= 8 voxels, got {self.size!r}")
    if not 0 < self.thickness <= self.size:
      raise ConfigError("data.thickness", f"must be in (0, data.size={self.size}] voxels, got "
                        f"{self.thickness}")
    if not 0 <= self.max_rotation <= 180:
      raise ConfigError("data.max_rotation", f"must be in [0, 180] degrees, got {self.max_rotation}")
    if self.noise < 0:
      raise ConfigError("data.noise", f"must be >= 0, got {self.noise}")

  def load(self, num_classes: int) -> data.Splits:
    digits = idx.Source(name="mnist", dir=self.dir, download=self.download).load(num_classes)
    folder = fetch.cache_dir() / "digits3d" / self.key(digits)
    if not (folder / "test.npy").exists():
      self._build(digits, folder)
    return data.Splits(_read(folder / "train.npy"), digits.train_labels,
                       _read(folder / "test.npy"), digits.test_labels,
                       location=f"digits3d:{folder}")

  def key(self, digits: data.Splits) -> str:
    """The cache key: the construction's fields and version, and the digits' contents."""
    h = hashlib.sha256(json.dumps({"version": VERSION, "size": self.size,
                                   "thickness": self.thickness, "max_rotation": self.max_rotation,
                                   "noise": self.noise, "seed": self.seed}).encode())
    for array in (digits.train_images, digits.test_images):
      h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()[:20]

  def _build(self, digits: data.Splits, folder: Path) -> None:
    """Writes train.npy and test.npy into `folder`, whole or not at all."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
      for split, images in (("train", digits.train_images), ("test", digits.test_images)):
        np.save(building / f"{split}.npy", volumes(images[..., 0], SPLITS[split], self))
      os.replace(building, folder)
    except OSError:
      if not (folder / "test.npy").exists():
        raise
      # Another process built it first: the same set, keep theirs.
    finally:
      shutil.rmtree(building, ignore_errors=True)  # Gone once renamed; else a failed build.


def _read(path: Path) -> np.ndarray:
  try:
    return np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DataError(f"{path}: a damaged file of the built digits3d set ({e}); delete "
                    f"{path.parent} and it is built again") from e


def example_rngs(seed: int, split: int, ids) -> list[np.random.Generator]:
  """Each example's generator, from (seed, split, index) alone."""
  return [np.random.default_rng((seed, split, int(i))) for i in ids]


def angles(rngs: list[np.random.Generator], max_rotation: float) -> np.ndarray:
  """The examples' three rotation angles in radians (the first draws of their generators)."""
  return np.deg2rad(np.stack([r.uniform(-max_rotation, max_rotation, 3) for r in rngs]))


def rotation(angles: np.ndarray) -> np.ndarray:
  """Rotation matrices (n, 3, 3) from angles (n, 3) in radians: in the (y, x) plane (the
  digit's own), then the (z, x) and (z, y) planes (tilting the slab)."""
  def plane(theta, i, j):
    m = np.tile(np.eye(3), (len(theta), 1, 1))
    m[:, i, i] = m[:, j, j] = np.cos(theta)
    m[:, i, j], m[:, j, i] = -np.sin(theta), np.sin(theta)
    return m
  return plane(angles[:, 0], 1, 2) @ plane(angles[:, 1], 0, 2) @ plane(angles[:, 2], 0, 1)


def volumes(images: np.ndarray, split: int, source: Source, chunk: int = 512) -> np.ndarray:
  """uint8 volumes (n, size, size, size, 1) of uint8 digit images (n, 28, 28)."""
  from PIL import Image
  n, size = len(images), source.size
  scaled = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR),
                                np.float32) for im in images]) / 255.0
  padded = np.pad(scaled, ((0, 0), (1, 1), (1, 1)))  # Zero outside the digit.
  centre = (size - 1) / 2
  grid = np.stack(np.meshgrid(*[np.arange(size) - centre] * 3, indexing="ij"), -1).reshape(-1, 3)
  out = np.empty((n, size ** 3), np.uint8)
  for start in range(0, n, chunk):
    ids = np.arange(start, min(start + chunk, n))
    rngs = example_rngs(source.seed, split, ids)
    # Each output voxel samples the slab where the inverse rotation takes it.
    points = grid @ rotation(angles(rngs, source.max_rotation))  # (b, voxels, 3): (z, y, x).
    weight = np.clip(source.thickness / 2 + 0.5 - np.abs(points[..., 0]), 0.0, 1.0)
    y, x = points[..., 1] + centre + 1, points[..., 2] + centre + 1
    value = _bilinear(padded[ids], y, x) * weight
    if source.noise:
      value = value + np.stack([r.normal(0.0, source.noise, size ** 3) for r in rngs])
    out[ids] = np.clip(np.round(value * 255), 0, 255).astype(np.uint8)
  return out.reshape(n, size, size, size, 1)


def _bilinear(images: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
  """images (b, h, w) sampled at (b, p) coordinates, zero outside."""
  b, h, w = images.shape
  y = np.clip(y, 0, h - 1.001)
  x = np.clip(x, 0, w - 1.001)
  y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
  fy, fx = y - y0, x - x0
  flat = images.reshape(b, -1)
  at = lambda yy, xx: np.take_along_axis(flat, yy * w + xx, axis=1)
  return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
          + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))
