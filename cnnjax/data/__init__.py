"""Data sets by `config.data.source`:

  idx        a folder of the four IDX files (MNIST and its relatives), 2-D images
  tfds       a prepared TensorFlow Datasets set, read without TensorFlow
  ucr        a UCR/UEA time-series set in `.ts` files (1-D)
  npz        a MedMNIST-3D style `.npz` file of volumes (3-D)
  synthetic  SYNTHETIC noisy 3-D shapes generated from a seed, for tests and demos
  folder     an image folder: train/<class>/*.png|jpg and test/<class>/*
  array_record  a folder written by `cnnjax data convert`, streamed from disk
"""
from __future__ import annotations

import os
from pathlib import Path

from cnnjax.data import fetch, idx, pipeline
from cnnjax.data.pipeline import Dataset
from cnnjax.errors import DataError

ENV_DATA_DIR = "CNNJAX_DATA_DIR"


def _idx_folder(data_config) -> Path:
  """The folder holding the IDX files: config.data.dir, else $CNNJAX_DATA_DIR, else the
  cache (downloading into it when config.data.download allows). Each may hold the
  files directly or in a sub-folder named config.data.name."""
  name = data_config.name
  if data_config.dir:
    roots, origin = [Path(data_config.dir)], "config.data.dir"
  elif os.environ.get(ENV_DATA_DIR):
    roots, origin = [Path(os.environ[ENV_DATA_DIR])], f"${ENV_DATA_DIR}"
  else:
    roots, origin = [fetch.cache_dir() / name], "the cache"
  looked = []
  for root in roots:
    for folder in (root, root / name):
      looked.append(str(folder))
      if idx.find_files(folder):  # Present, maybe partly: load_folder says what lacks.
        return folder
  hint = (f"Point cnnjax at a folder holding {', '.join(n for n, _ in idx.FILES.values())} "
          f"(.gz or not) with --config.data.dir=DIR or {ENV_DATA_DIR}=DIR.")
  if origin == "the cache" and data_config.download:
    try:
      return fetch.fetch(name, roots[0])
    except DataError as e:
      raise DataError(f"{name} IDX files not found (looked in {', '.join(looked)}) and {e}. "
                      f"{hint}") from e
  raise DataError(f"{name} IDX files not found: looked in {', '.join(looked)} ({origin}). {hint}")


def _root(data_config) -> Path:
  """config.data.dir, else $CNNJAX_DATA_DIR (for sources without a download)."""
  root = data_config.dir or os.environ.get(ENV_DATA_DIR)
  if not root:
    raise DataError(f"no folder for {data_config.source} data set {data_config.name!r}: set "
                    f"--config.data.dir=DIR or {ENV_DATA_DIR}=DIR")
  return Path(root)


def load(data_config, seed: int = 0) -> Dataset:
  """The data set `data_config` names, in memory: config.data.validation_examples held out
  of its training data (stratified, from `seed`), the rest cut to config.data.train_examples."""
  d = data_config
  class_names = None
  if d.source == "tfds":
    from cnnjax.data import tfds
    arrays = tfds.load(d.name, d.dir or None, d.num_classes, d.read_threads, d.workers)
    location = f"tfds:{d.name}@{d.dir or 'default data_dir'}"
  elif d.source == "ucr":
    from cnnjax.data import ucr
    root = _root(d)
    *arrays, class_names = ucr.load(root, d.name, d.num_classes, d.unequal_length,
                                    d.series_length, d.znorm)
    location = str(ucr.find(root, d.name)[0].parent.resolve())
  elif d.source == "npz":
    from cnnjax.data import volumes
    root = _root(d)
    path = root if root.suffix == ".npz" else root / f"{d.name}.npz"
    arrays = volumes.load_npz(path)
    location = str(path.resolve())
  elif d.source == "folder":
    from cnnjax.data import folder
    root = _root(d)
    *arrays, class_names = folder.load(root, d.image_size, d.channels)
    location = f"folder:{root.resolve()}"
  elif d.source == "array_record":
    from cnnjax.data import arrayrecord
    root = _root(d)
    *arrays, class_names = arrayrecord.load(root, d.read_threads, d.workers)
    location = f"array_record:{root.resolve()}"
  elif d.source == "synthetic":
    from cnnjax.data import volumes
    s = d.synthetic
    arrays = (*volumes.synthetic_volumes(s.train, s.size, s.noise, s.seed),
              *volumes.synthetic_volumes(s.test, s.size, s.noise, s.seed + 1))
    class_names, location = volumes.SHAPES, f"synthetic:volumes(seed={s.seed})"
  else:
    folder = _idx_folder(d)
    arrays = idx.load_folder(folder, d.num_classes)
    location = str(folder.resolve())
  found = int(max(arrays[1].max(), arrays[3].max())) + 1
  num_classes = d.num_classes or (len(class_names) if class_names else found)
  for labels in (arrays[1], arrays[3]):
    pipeline.check_labels(labels, num_classes, location)
  dataset = Dataset(*arrays, num_classes=num_classes, location=location,
                    class_names=tuple(class_names or ()))
  held_out = data_config.validation_examples
  if held_out >= len(dataset.train_labels):
    raise DataError(f"config.data.validation_examples={held_out} but {location} holds "
                    f"{len(dataset.train_labels)} training examples; hold out fewer")
  dataset = pipeline.hold_out(dataset, held_out, seed)
  if data_config.train_examples > len(dataset.train_labels):
    raise DataError(f"config.data.train_examples={data_config.train_examples} but {location} "
                    f"holds {len(dataset.train_labels)} training examples"
                    + (f" after {held_out} held out for validation" if held_out else ""))
  return dataset.take_train(data_config.train_examples)
