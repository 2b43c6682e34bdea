"""Data sets that stream from disk: ArrayRecord files written by `cnnjax data convert`.

A converted data set is a folder:

  cnnjax_dataset.json            input shape, dtype, classes, and per split its files
                                 and how many examples each holds
  train.labels.npy, test.labels.npy
  train-00000-of-00004.array_record, ...   one record per example: its raw array bytes

Files are written with `group_size:1`, so any example is read without reading its
neighbours. Labels are small and live in memory; examples are read only when a batch
asks for them (`RecordArray`), so a data set larger than memory trains as well.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from cnnjax import data
from cnnjax.data.streaming import StreamingArray, check_readers
from cnnjax.errors import DataError

INDEX = "cnnjax_dataset.json"
FORMAT = "cnnjax-arrayrecord-1"
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Source:
  """A data set converted by `cnnjax data convert`, read from disk as batches ask for it."""
  dir: str = ""  # The converted folder; "" = $CNNJAX_DATA_DIR.
  read_threads: int = 4  # Threads reading batches ahead of the step (Grain).
  workers: int = 0  # Processes reading them (0 = in the training process).

  def __post_init__(self):
    check_readers(self.read_threads, self.workers)

  def load(self, num_classes: int) -> data.Splits:
    del num_classes  # data.load checks the labels.
    folder = data.root(self.dir, "a converted (array_record) data set")
    *arrays, class_names = load(folder, self.read_threads, self.workers)
    return data.Splits(*arrays, location=f"array_record:{folder.resolve()}",
                       class_names=class_names)


class RecordArray(StreamingArray):
  """An (N, *shape) array whose rows are records of ArrayRecord files (see `streaming`)."""

  def __init__(self, paths: list[str], shape: tuple[int, ...], dtype: str,
               read_threads: int = 4, workers: int = 0):
    from array_record.python import array_record_data_source
    self.paths = list(paths)
    self._source = array_record_data_source.ArrayRecordDataSource(self.paths)
    super().__init__(shape, dtype, np.arange(len(self._source)), read_threads, workers)

  def _read(self, rows: np.ndarray) -> np.ndarray:
    records = self._source.__getitems__(rows.tolist()) if len(rows) else []
    return np.frombuffer(b"".join(records), self.dtype).reshape(len(rows), *self._row_shape)


def _shard_names(split: str, shards: int) -> list[str]:
  return [f"{split}-{i:05d}-of-{shards:05d}.array_record" for i in range(shards)]


def write_split(folder: Path, split: str, images, labels: np.ndarray,
                shard_examples: int = 100_000, chunk: int = 4096) -> dict:
  """Writes one split's examples (any array-like, read `chunk` rows at a time) and labels;
  returns its entry of the index."""
  from array_record.python import array_record_module
  n = len(labels)
  shards = max(1, math.ceil(n / shard_examples))
  names, counts = _shard_names(split, shards), []
  for shard, name in enumerate(names):
    start, stop = shard * n // shards, (shard + 1) * n // shards
    writer = array_record_module.ArrayRecordWriter(str(folder / name), "group_size:1")
    for first in range(start, stop, chunk):
      for row in np.ascontiguousarray(images[first:min(first + chunk, stop)]):
        writer.write(row.tobytes())
    writer.close()
    counts.append(stop - start)
  np.save(folder / f"{split}.labels.npy", np.asarray(labels, np.int32))
  return {"files": names, "examples": counts}


def write_index(folder: Path, input_shape, dtype, num_classes: int, class_names: Iterable[str],
                splits: dict, source: str) -> None:
  index = {"format": FORMAT, "input_shape": list(input_shape), "dtype": np.dtype(dtype).name,
           "num_classes": int(num_classes), "class_names": list(class_names), "source": source,
           "splits": splits}
  (folder / INDEX).write_text(json.dumps(index, indent=2) + "\n")


def convert(dataset, folder: Path, shard_examples: int = 100_000) -> Path:
  """Writes an in-memory `data.Dataset` (all its training examples, validation split
  included, and its test set) as a converted data set in `folder`."""
  folder.mkdir(parents=True, exist_ok=True)
  train_images, train_labels = dataset.train_images, dataset.train_labels
  if dataset.has_validation:  # Put back what was held out: the config that reads it decides.
    raise ValueError("convert the data set before holding out a validation split")
  splits = {"train": write_split(folder, "train", train_images, train_labels, shard_examples),
            "test": write_split(folder, "test", dataset.test_images, dataset.test_labels,
                                shard_examples)}
  write_index(folder, dataset.input_shape, train_images.dtype, dataset.num_classes,
              dataset.class_names, splits, dataset.location)
  return folder


def _open_split(folder: Path, index: dict, split: str, read_threads: int, workers: int):
  entry = index["splits"].get(split)
  if entry is None:
    raise DataError(f"{folder / INDEX}: no split {split!r} (it has {', '.join(index['splits'])})")
  from array_record.python import array_record_module
  paths = []
  for name, expected in zip(entry["files"], entry["examples"]):
    path = folder / name
    if not path.is_file():
      raise DataError(f"{path}: missing (listed in {INDEX})")
    try:
      reader = array_record_module.ArrayRecordReader(str(path))
      found = reader.num_records()
      reader.close()
    except Exception as e:  # array_record raises its own errors for damaged files.
      raise DataError(f"{path}: not a readable array_record file "
                      f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
    if found != expected:
      raise DataError(f"{path}: holds {found} records but {INDEX} lists {expected} "
                      f"(truncated or replaced?); convert the data set again")
    paths.append(str(path))
  labels_path = folder / f"{split}.labels.npy"
  try:
    labels = np.load(labels_path).astype(np.int32)
  except (OSError, ValueError) as e:
    raise DataError(f"{labels_path}: unreadable ({e})") from e
  if len(labels) != sum(entry["examples"]):
    raise DataError(f"{labels_path}: {len(labels)} labels for {sum(entry['examples'])} records")
  shape = tuple(index["input_shape"])
  return RecordArray(paths, shape, index["dtype"], read_threads=read_threads,
                     workers=workers), labels


def load(folder: Path, read_threads: int = 4, workers: int = 0):
  """(train examples, train labels, test examples, test labels, class names) of a
  converted data set; examples stay on disk (`RecordArray`)."""
  folder = Path(folder)
  path = folder / INDEX
  if not path.is_file():
    raise DataError(f"{path}: not found; write an ArrayRecord data set with "
                    f"`cnnjax data convert --config CONFIG.py --output {folder}`")
  try:
    index = json.loads(path.read_text())
  except ValueError as e:
    raise DataError(f"{path}: not valid JSON ({e})") from e
  if index.get("format") != FORMAT:
    raise DataError(f"{path}: format {index.get('format')!r}, expected {FORMAT!r}")
  train = _open_split(folder, index, "train", read_threads, workers)
  test = _open_split(folder, index, "test", read_threads, workers)
  return (*train, *test, tuple(index.get("class_names", ())))
