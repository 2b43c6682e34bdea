"""Image classification sets prepared by TensorFlow Datasets, read without TensorFlow.

`tfds.data_source` reads prepared array_record files directly; nothing is downloaded
here (download=False), so a missing set fails at once with TFDS's own message. Images
stay in the files and are decoded when a batch reads them, so a set larger than memory
trains as well; the labels are read once, without decoding the images.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from cnnjax import data
from cnnjax.data.pipeline import check_labels
from cnnjax.data.streaming import StreamingArray, check_readers
from cnnjax.errors import DataError

_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class Source:
  """A data set prepared by TensorFlow Datasets, with an image and a label feature."""
  name: str = "mnist"  # TFDS's name of the data set.
  dir: str = ""  # TFDS's data_dir; "" = TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets).
  read_threads: int = 4  # Threads reading batches ahead of the step (Grain).
  workers: int = 0  # Processes reading them (0 = in the training process).

  def __post_init__(self):
    check_readers(self.read_threads, self.workers)

  def load(self, num_classes: int) -> data.Splits:
    arrays = load(self.name, self.dir or None, num_classes, self.read_threads, self.workers)
    return data.Splits(*arrays, location=f"tfds:{self.name}@{self.dir or 'default data_dir'}")


class TfdsArray(StreamingArray):
  """The images of a prepared TFDS split, decoded (with Pillow, no TensorFlow) when read."""

  def __init__(self, source, key: str, row_shape: tuple[int, ...], read_threads: int,
               workers: int):
    self._source, self._key = source, key
    super().__init__(row_shape, np.uint8, np.arange(len(source)), read_threads, workers)

  def _read(self, rows: np.ndarray) -> np.ndarray:
    out = np.empty((len(rows), *self._row_shape), np.uint8)
    for i, example in enumerate(self._source.__getitems__(rows.tolist()) if len(rows) else []):
      out[i] = np.asarray(example[self._key]).reshape(self._row_shape)
    return out


def _read_split(name: str, split: str, data_dir: str | None, read_threads: int, workers: int):
  import tensorflow_datasets as tfds  # Imported here: only TFDS runs pay for it.

  def open_source(**kwargs):
    try:
      return tfds.data_source(name, split=split, data_dir=data_dir, download=False, **kwargs)
    except Exception as e:  # TFDS raises several types for "not prepared here".
      where = data_dir or "TFDS's default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
      raise DataError(f"TFDS data set {name!r} split {split!r} is not prepared in {where}: "
                      f"{type(e).__name__}: {e}") from e

  source = open_source()
  if not len(source):
    raise DataError(f"TFDS data set {name!r} split {split!r} is empty")
  try:
    first = np.asarray(source[0]["image"])
    undecoded = open_source(decoders={"image": tfds.decode.SkipDecoding()})
    labels = np.asarray([int(e["label"]) for start in range(0, len(source), _CHUNK)
                         for e in undecoded.__getitems__(
                             list(range(start, min(start + _CHUNK, len(source)))))], np.int32)
  except Exception as e:  # E.g. a feature whose decoding needs TensorFlow.
    raise DataError(f"TFDS data set {name!r} split {split!r}: cannot decode its examples "
                    f"({type(e).__name__}: {e}); the IDX source reads MNIST without TFDS") from e
  if first.dtype != np.uint8:
    raise DataError(f"TFDS data set {name!r}: images are {first.dtype}, expected uint8 pixels")
  row_shape = first.shape if first.ndim == 3 else (*first.shape, 1)  # (H, W) gains a channel.
  return TfdsArray(source, "image", row_shape, read_threads, workers), labels


def load(name: str, data_dir: str | None, num_classes: int, read_threads: int = 4,
         workers: int = 0):
  """(train images, train labels, test images, test labels) of a prepared TFDS set; the
  images stream from its files (`TfdsArray`), the labels are read once."""
  arrays = (_read_split(name, "train", data_dir, read_threads, workers)
            + _read_split(name, "test", data_dir, read_threads, workers))
  for labels, split in ((arrays[1], "train"), (arrays[3], "test")):
    if num_classes:  # Else data.load checks them against the classes it counts.
      check_labels(labels, num_classes, f"TFDS data set {name!r} split {split!r}")
  return arrays
