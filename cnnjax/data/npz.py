"""Volumetric classification sets in MedMNIST-3D style `.npz` files.

The layout is MedMNIST's: `train_images` (N, D, H, W[, C]) and `train_labels` (N,) or
(N, 1), the same for `test_` (and `val_`, which is not used here).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from cnnjax import data
from cnnjax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Source:
  """A MedMNIST-3D style `.npz` file of volumes."""
  name: str = "organmnist3d"  # The file's stem, in `dir`.
  dir: str = ""  # Its folder, or the `.npz` file itself; "" = $CNNJAX_DATA_DIR.

  def load(self, num_classes: int) -> data.Splits:
    del num_classes  # data.load checks the labels.
    folder = data.root(self.dir, f"npz data set {self.name!r}")
    path = folder if folder.suffix == ".npz" else folder / f"{self.name}.npz"
    return data.Splits(*load_npz(path), location=str(path.resolve()))


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
