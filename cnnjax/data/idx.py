"""Reader for folders of IDX files: MNIST's canonical format (and Fashion-/K-MNIST's).

IDX: two zero bytes, a type byte (0x08 = uint8), a dimension count, one big-endian
uint32 per dimension, then the values. Files may be gzipped (`.gz`) or not.
"""
from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from cnnjax import data
from cnnjax.data import fetch
from cnnjax.data.pipeline import check_labels
from cnnjax.errors import DataError


@dataclasses.dataclass(frozen=True)
class Source:
  """The four IDX files of MNIST (or Fashion-, K-MNIST, ...) in a folder."""
  name: str = "mnist"  # The data set: a sub-folder of `dir` may hold it; its cache folder.
  dir: str = ""  # The folder; "" = $CNNJAX_DATA_DIR, else the cache (see `download`).
  download: bool = True  # Fetch known IDX files (MNIST's) into the cache when found nowhere.

  def load(self, num_classes: int) -> data.Splits:
    folder = self.folder()
    return data.Splits(*load_folder(folder, num_classes), location=str(folder.resolve()))

  def folder(self) -> Path:
    """The folder holding the IDX files: `dir`, else $CNNJAX_DATA_DIR, else the cache
    (downloading into it when `download` allows). Each may hold the files directly or in
    a sub-folder named `name`."""
    if self.dir:
      root, origin = Path(self.dir), "config.data.dir"
    elif os.environ.get(data.ENV_DATA_DIR):
      root, origin = Path(os.environ[data.ENV_DATA_DIR]), f"${data.ENV_DATA_DIR}"
    else:
      root, origin = fetch.cache_dir() / self.name, "the cache"
    looked = []
    for folder in (root, root / self.name):
      looked.append(str(folder))
      if find_files(folder):  # Present, maybe partly: load_folder says what lacks.
        return folder
    hint = (f"Point cnnjax at a folder holding {', '.join(n for n, _ in FILES.values())} "
            f"(.gz or not) with --config.data.dir=DIR or {data.ENV_DATA_DIR}=DIR.")
    if origin == "the cache" and self.download:
      try:
        return fetch.fetch(self.name, root)
      except DataError as e:
        raise DataError(f"{self.name} IDX files not found (looked in {', '.join(looked)}) and "
                        f"{e}. {hint}") from e
    raise DataError(f"{self.name} IDX files not found: looked in {', '.join(looked)} "
                    f"({origin}). {hint}")

# Canonical names, and the dotted variant some mirrors use.
FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}
_UBYTE = 0x08


def find_files(folder: Path) -> dict[str, Path]:
  """The IDX files present in `folder`, by role (missing roles are left out)."""
  found = {}
  for role, names in FILES.items():
    for name in names:
      for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file() and role not in found:
          found[role] = candidate
  return found


def _read_bytes(path: Path) -> bytes:
  try:
    if path.suffix == ".gz":
      with gzip.open(path, "rb") as f:
        return f.read()
    return path.read_bytes()
  except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError.
    raise DataError(f"{path}: not a readable gzip file (corrupt or truncated download?): {e}") from e


def parse_idx(raw: bytes, path: Path | str = "<bytes>") -> np.ndarray:
  """The array an IDX byte string holds, after checking its header against its size."""
  if len(raw) < 4:
    raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header")
  zero, dtype, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
  if zero != 0 or dtype != _UBYTE or ndim not in (1, 3):
    magic = int.from_bytes(raw[:4], "big")
    raise DataError(f"{path}: bad IDX magic number {magic} (expected 2049 for labels "
                    f"or 2051 for images)")
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f"{path}: truncated IDX header")
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  expected = int(np.prod(shape))
  if len(raw) - header != expected:
    raise DataError(f"{path}: header promises shape {shape} ({expected} bytes) but the file "
                    f"holds {len(raw) - header} data bytes (truncated or corrupt)")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_idx(path: Path) -> np.ndarray:
  return parse_idx(_read_bytes(path), path)


def load_folder(folder: Path, num_classes: int):
  """(train_images, train_labels, test_images, test_labels) from a folder of IDX files.

  Images come back as uint8 (N, H, W, 1), labels as int32 (N,).
  """
  files = find_files(folder)
  missing = [FILES[role][0] for role in FILES if role not in files]
  if missing:
    raise DataError(f"{folder}: missing {', '.join(missing)} (.gz or not)")
  arrays = []
  for split in ("train", "test"):
    images = read_idx(files[f"{split}_images"])
    labels = read_idx(files[f"{split}_labels"])
    if images.ndim != 3:
      raise DataError(f"{files[f'{split}_images']}: holds labels, not images (1-D IDX)")
    if labels.ndim != 1:
      raise DataError(f"{files[f'{split}_labels']}: holds images, not labels (3-D IDX)")
    if len(images) != len(labels):
      raise DataError(f"{files[f'{split}_images']} holds {len(images)} images but "
                      f"{files[f'{split}_labels']} holds {len(labels)} labels")
    if num_classes:
      check_labels(labels, num_classes, files[f"{split}_labels"])
    arrays += [images[..., None], labels.astype(np.int32)]
  if arrays[0].shape[1:] != arrays[2].shape[1:]:
    raise DataError(f"{files['test_images']}: images are {arrays[2].shape[1]}x{arrays[2].shape[2]} "
                    f"but {files['train_images']} holds {arrays[0].shape[1]}x{arrays[0].shape[2]}")
  return tuple(arrays)
