"""Image classification sets prepared by TensorFlow Datasets, read without TensorFlow.

`tfds.data_source` reads prepared array_record files directly; nothing is downloaded
here (download=False), so a missing set fails at once with TFDS's own message.
"""
from __future__ import annotations

import numpy as np

from cnnjax.errors import DataError

_CHUNK = 4096


def _read_split(name: str, split: str, data_dir: str | None):
  import tensorflow_datasets as tfds  # Imported here: only TFDS runs pay for it.

  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # TFDS raises several types for "not prepared here".
    where = data_dir or "TFDS's default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    raise DataError(f"TFDS data set {name!r} split {split!r} is not prepared in {where}: "
                    f"{type(e).__name__}: {e}") from e
  images, labels = [], []
  try:
    for start in range(0, len(source), _CHUNK):
      for example in source.__getitems__(list(range(start, min(start + _CHUNK, len(source))))):
        images.append(np.asarray(example["image"]))
        labels.append(int(example["label"]))
  except Exception as e:  # E.g. a feature whose decoding needs TensorFlow.
    raise DataError(f"TFDS data set {name!r} split {split!r}: cannot decode its examples "
                    f"({type(e).__name__}: {e}); the IDX source reads MNIST without TFDS") from e
  if not images:
    raise DataError(f"TFDS data set {name!r} split {split!r} is empty")
  images = np.stack(images)
  if images.dtype != np.uint8:
    raise DataError(f"TFDS data set {name!r}: images are {images.dtype}, expected uint8 pixels")
  if images.ndim == 3:  # (N, H, W) without a channel axis.
    images = images[..., None]
  return images, np.asarray(labels, np.int32)


def load(name: str, data_dir: str | None, num_classes: int):
  """(train_images, train_labels, test_images, test_labels) of a prepared TFDS set."""
  arrays = _read_split(name, "train", data_dir) + _read_split(name, "test", data_dir)
  for labels, split in ((arrays[1], "train"), (arrays[3], "test")):
    if labels.min() < 0 or (num_classes and labels.max() >= num_classes):
      raise DataError(f"TFDS data set {name!r} split {split!r}: labels span "
                      f"{labels.min()}..{labels.max()}, outside config.data.num_classes={num_classes}")
  return arrays
