"""Data sets by `config.data.source`: a module of this package, whose `Source` reads it, or
any importable `package.module:Class`:

  idx           a folder of the four IDX files (MNIST and its relatives), 2-D images
  tfds          a prepared TensorFlow Datasets set, read without TensorFlow
  ucr           a UCR/UEA time-series set in `.ts` files (1-D)
  npz           a MedMNIST-3D style `.npz` file of volumes (3-D)
  synthetic     noisy 3-D shapes generated from a seed, for tests and demos
  digits3d      MNIST digits as randomly rotated slabs in a cube (3-D), built from IDX files
  folder        an image folder: train/<class>/*.png|jpg and test/<class>/*
  array_record  a folder written by `cnnjax data convert`, streamed from disk

A source is a dataclass: its fields (with defaults) are its config fields, and
`load(num_classes)` returns its `Splits`, checking its own fields when constructed.
`config.data` holds the source's fields beside the shared ones of `config()`: what is
done with any data set (the validation split, normalisation, augmentation, batching).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from cnnjax import fields
from cnnjax.data import pipeline
from cnnjax.data.pipeline import Dataset
from cnnjax.errors import ConfigError, DataError

ENV_DATA_DIR = "CNNJAX_DATA_DIR"
# Modules here that are not sources (array_record's is its own module, named as the source).
NOT_CLASSES = ("pipeline", "transforms", "streaming", "fetch")


@dataclasses.dataclass(frozen=True)
class Splits:
  """What a source reads: train and test examples (arrays, or streaming arrays whose rows
  stay on disk), labels as int32 class numbers, and where it read them from."""
  train_images: Any  # (N, *spatial, C): uint8 pixels, or float32 (time series)
  train_labels: np.ndarray
  test_images: Any
  test_labels: np.ndarray
  location: str  # For the run record and error messages.
  class_names: tuple[str, ...] = ()  # Each class number's label, where the data names them.


def _shared() -> ml_collections.ConfigDict:
  """The fields of `config.data` that every source has."""
  c = ml_collections.ConfigDict()
  c.source = "idx"  # A module of cnnjax/data (see above) or 'package.module:Class'.
  # Held out of the training data for every choice made during training (evaluation
  # curves, the delivered checkpoint): stratified by class, fixed by config.seed. 0 = none.
  c.validation_examples = 0
  c.train_examples = 0  # Use the first N of the remaining training examples; 0 = all.
  c.num_classes = 10  # 0 = as many as the data has.
  c.mean = 0.1307  # Standardisation, after uint8 pixels are scaled to [0, 1].
  c.std = 0.3081
  c.augment_shift = 0  # Random translation by up to this many pixels (cells); 0 = off.
  c.augment_rotate = 0.0  # 2-D images: random rotation by up to this many degrees.
  c.augment_scale = 0.0  # 2-D images: random zoom by a factor in [1 - s, 1 + s].
  # Global; the last batch is padded and masked. Small enough that a CPU keeps a batch's
  # activations in cache (docs/performance.md).
  c.eval_batch_size = 256
  # 3-D volumes: each projected along this spatial axis (0, 1 or 2) into a 2-D image,
  # by its maximum or mean voxel (`projection`), for a 2-D network; -1 = off.
  c.project_axis = -1
  c.projection = "max"
  # Only these classes (class numbers, or names where the data names its classes),
  # relabelled 0..n-1 in the order given: e.g. (5, 6, 7, 8, 9). Empty = all.
  c.classes = ()
  # Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019): each training example is mixed
  # with a partner drawn from the global batch, with a weight (or box) from Beta(a, a);
  # the targets are mixed alike. 0 = off; with both, each example takes one at random.
  c.mixup_alpha = 0.0
  c.cutmix_alpha = 0.0
  return c


SHARED = tuple(_shared())


def config(source: str = "idx", **values) -> ml_collections.ConfigDict:
  """`config.data`: the shared fields, then the fields of `source`, then `values`."""
  return with_source(_shared(), source, **values)


def with_source(data_config, source: str, **values) -> ml_collections.ConfigDict:
  """A copy of `data_config` whose shared fields are kept and whose source is `source`,
  with that source's fields at their defaults, then `values`."""
  c = ml_collections.ConfigDict({k: data_config[k] for k in SHARED})
  c.source = source
  fields.add_fields(c, source_class(source), (), "data.source")
  fields.set_values(c, values, "data", "data source", source, SHARED)
  return c


def source_class(name: str):
  """The source class `name` (config.data.source) stands for."""
  return fields.find_class(__name__, name, "Source", "data.source")


def source(data_config):
  """The source `data_config` names, constructed from its fields (which it checks)."""
  cls = source_class(data_config.source)
  own = fields.defaults(cls, (), "data.source")
  fields.check_own(data_config, own, SHARED, "data", "data source", data_config.source)
  try:
    return cls(**{k: data_config[k] for k in own})
  except (ValueError, TypeError) as e:
    raise ConfigError("data", f"{data_config.source}: {e}") from e


def root(folder: str, what: str) -> Path:
  """`folder` (a source's `dir` field), else $CNNJAX_DATA_DIR: where `what` lies."""
  folder = folder or os.environ.get(ENV_DATA_DIR)
  if not folder:
    raise DataError(f"no folder for {what}: set --config.data.dir=DIR or {ENV_DATA_DIR}=DIR")
  return Path(folder)


def project(splits: Splits, axis: int, how: str) -> Splits:
  """Each volume (D, H, W, C) as the image of its maximum or mean along spatial `axis`."""
  reduce = {"max": np.max, "mean": lambda a, axis: np.round(np.mean(a, axis)).astype(a.dtype)}[how]
  arrays = {}
  for split in ("train_images", "test_images"):
    images = getattr(splits, split)
    if not isinstance(images, np.ndarray) or images.ndim != 5:
      raise ConfigError("data.project_axis", f"projects 3-D volumes held in memory; "
                        f"{splits.location} holds examples of shape {tuple(images.shape[1:])}")
    arrays[split] = reduce(images, axis=axis + 1)
  return dataclasses.replace(splits, **arrays)


def only_classes(splits: Splits, classes: tuple, num_classes: int) -> tuple[Splits, int]:
  """The examples of `classes` (config.data.classes: class numbers or names), relabelled
  0..n-1 in their order; and n."""
  numbers = []
  for c in classes:
    if isinstance(c, str) and c in splits.class_names:
      c = splits.class_names.index(c)
    if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < num_classes:
      names = f" or one of {', '.join(splits.class_names)}" if splits.class_names else ""
      raise ConfigError("data.classes", f"{c!r} is not a class of {splits.location}: a class "
                        f"number in [0, {num_classes}){names}")
    numbers.append(c)
  relabel = np.full(num_classes, -1, np.int32)
  relabel[numbers] = np.arange(len(numbers), dtype=np.int32)
  arrays = {}
  for split in ("train", "test"):
    labels = relabel[getattr(splits, split + "_labels")]
    keep = np.flatnonzero(labels >= 0)
    arrays[split + "_images"] = pipeline.rows(getattr(splits, split + "_images"), keep)
    arrays[split + "_labels"] = labels[keep]
  # Each new class number keeps its old label as its name: "5" for class 0 of (5, ..., 9).
  names = tuple(splits.class_names[n] if splits.class_names else str(n) for n in numbers)
  return dataclasses.replace(splits, **arrays, class_names=names), len(numbers)


def load(data_config, seed: int = 0) -> Dataset:
  """The data set `data_config` names, in memory (or streaming): config.data.
  validation_examples held out of its training data (stratified, from `seed`), the rest
  cut to config.data.train_examples."""
  d = data_config
  splits = source(d).load(d.num_classes)
  if d.project_axis >= 0:
    splits = project(splits, d.project_axis, d.projection)
  found = int(max(splits.train_labels.max(), splits.test_labels.max())) + 1
  num_classes = d.num_classes or (len(splits.class_names) if splits.class_names else found)
  for labels in (splits.train_labels, splits.test_labels):
    pipeline.check_labels(labels, num_classes, splits.location)
  if d.classes:
    splits, num_classes = only_classes(splits, tuple(d.classes), num_classes)
  dataset = Dataset(splits.train_images, splits.train_labels, splits.test_images,
                    splits.test_labels, num_classes=num_classes, location=splits.location,
                    class_names=tuple(splits.class_names))
  held_out = d.validation_examples
  if held_out >= len(dataset.train_labels):
    raise DataError(f"config.data.validation_examples={held_out} but {splits.location} holds "
                    f"{len(dataset.train_labels)} training examples; hold out fewer")
  dataset = pipeline.hold_out(dataset, held_out, seed)
  if d.train_examples > len(dataset.train_labels):
    raise DataError(f"config.data.train_examples={d.train_examples} but {splits.location} "
                    f"holds {len(dataset.train_labels)} training examples"
                    + (f" after {held_out} held out for validation" if held_out else ""))
  return dataset.take_train(d.train_examples)
