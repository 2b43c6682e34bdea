"""Data sets by `config.data.source`: a folder of IDX files, or a prepared TFDS set."""
from __future__ import annotations

import os
from pathlib import Path

from cnnjax.data import fetch, idx
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


def load(data_config) -> Dataset:
  """The data set `data_config` names, in memory, cut to config.data.train_examples."""
  if data_config.source == "tfds":
    from cnnjax.data import tfds
    arrays = tfds.load(data_config.name, data_config.dir or None, data_config.num_classes)
    location = f"tfds:{data_config.name}@{data_config.dir or 'default data_dir'}"
  else:
    folder = _idx_folder(data_config)
    arrays = idx.load_folder(folder, data_config.num_classes)
    location = str(folder.resolve())
  dataset = Dataset(*arrays, num_classes=data_config.num_classes, location=location)
  if data_config.train_examples > len(dataset.train_labels):
    raise DataError(f"config.data.train_examples={data_config.train_examples} but {location} "
                    f"holds {len(dataset.train_labels)} training examples")
  return dataset.take_train(data_config.train_examples)
