"""Reader for time-series classification sets in the UCR/UEA `.ts` format (sktime/aeon).

Header lines start with '#' (comments) or '@' (metadata; `@classLabel true a b c` lists
the labels, whose order gives the class numbers); after `@data`, one series per line:
comma-separated values, channels separated by ':', the label last. Series of unequal
length are padded (with a mask channel: 1 on real values) or resampled.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from cnnjax import data
from cnnjax.errors import ConfigError, DataError

UNEQUAL_LENGTH = ("pad", "resample")


@dataclasses.dataclass(frozen=True)
class Source:
  """A UCR/UEA time-series set: `dir`/NAME/NAME_TRAIN.ts and NAME_TEST.ts (or in `dir`)."""
  name: str = "GunPoint"  # The set.
  dir: str = ""  # The archive's folder; "" = $CNNJAX_DATA_DIR.
  znorm: bool = True  # Z-normalise each series and channel.
  # Series of unequal length: "pad" (with a mask channel: 1 on real steps) or "resample".
  unequal_length: str = "pad"
  series_length: int = 0  # Length to pad or resample to; 0 = the longest series.

  def __post_init__(self):
    if self.unequal_length not in UNEQUAL_LENGTH:
      raise ConfigError("data.unequal_length", f"{self.unequal_length!r} is not one of "
                        f"{', '.join(map(repr, UNEQUAL_LENGTH))}")
    if self.series_length < 0:
      raise ConfigError("data.series_length", "must be >= 0 (0 = the longest)")

  def load(self, num_classes: int) -> data.Splits:
    folder = data.root(self.dir, f"UCR/UEA set {self.name!r}")
    *arrays, class_names = load(folder, self.name, num_classes, self.unequal_length,
                                self.series_length, self.znorm)
    location = str(find(folder, self.name)[0].parent.resolve())
    return data.Splits(*arrays, location=location, class_names=class_names)


def parse_ts(path: Path):
  """(list of (channels, length) float arrays, string labels, declared label order)."""
  series, labels, declared = [], [], None
  in_data = False
  try:
    lines = path.read_text().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: cannot read: {e}") from e
  channels = None
  for number, line in enumerate(lines, 1):
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    if not in_data:
      lower = line.lower()
      if lower.startswith("@classlabel"):
        parts = line.split()
        if len(parts) < 3 or parts[1].lower() != "true":
          raise DataError(f"{path}:{number}: @classLabel must be 'true' followed by the labels")
        declared = parts[2:]
      elif lower.startswith("@data"):
        in_data = True
      continue
    *fields, label = line.split(":")
    if not fields:
      raise DataError(f"{path}:{number}: no values before the label {label!r}")
    if channels is None:
      channels = len(fields)
    elif len(fields) != channels:
      raise DataError(f"{path}:{number}: {len(fields)} channels, earlier lines have {channels}")
    try:
      values = [np.array([float(v) if v.strip() != "?" else np.nan for v in f.split(",")],
                         np.float32) for f in fields]
    except ValueError as e:
      raise DataError(f"{path}:{number}: not a number: {e}") from e
    if len({len(v) for v in values}) > 1:
      raise DataError(f"{path}:{number}: channels of one series differ in length "
                      f"({sorted({len(v) for v in values})})")
    label = label.strip()
    if declared is not None and label not in declared:
      raise DataError(f"{path}:{number}: label {label!r} is not among @classLabel {declared}")
    series.append(np.stack(values))
    labels.append(label)
  if not in_data:
    raise DataError(f"{path}: no @data line: not a .ts file")
  if not series:
    raise DataError(f"{path}: no series after @data")
  return series, labels, declared


def _znorm(x: np.ndarray) -> np.ndarray:
  mean = np.nanmean(x, axis=-1, keepdims=True)
  std = np.nanstd(x, axis=-1, keepdims=True)
  return (x - mean) / np.where(std > 1e-8, std, 1.0)


def _resample(x: np.ndarray, length: int) -> np.ndarray:
  old = np.linspace(0.0, 1.0, x.shape[-1])
  new = np.linspace(0.0, 1.0, length)
  return np.stack([np.interp(new, old, channel) for channel in x])


def to_array(series, length: int, how: str, znorm: bool, equal: bool) -> np.ndarray:
  """(N, length, channels [+1 mask unless `equal`]) float32 from (channels, length_i) series;
  `equal`: every series of the set (train and test) already has `length` steps."""
  out = []
  for s in series:
    s = np.nan_to_num(_znorm(s) if znorm else s)  # Missing values ('?') become 0.
    if equal:
      out.append(s.T)
    elif how == "resample":
      out.append(_resample(s, length).T)
    else:
      padded = np.zeros((s.shape[0] + 1, length), np.float32)
      n = min(length, s.shape[-1])
      padded[:-1, :n] = s[:, :n]
      padded[-1, :n] = 1.0  # Mask channel: which steps are real.
      out.append(padded.T)
  return np.stack(out).astype(np.float32)


def find(root: Path, name: str) -> tuple[Path, Path]:
  for folder in (root / name, root):
    train, test = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
    if train.is_file() and test.is_file():
      return train, test
  raise DataError(f"UCR/UEA set {name!r} not found: looked for {name}_TRAIN.ts and "
                  f"{name}_TEST.ts in {root / name} and {root}")


def load(root: Path, name: str, num_classes: int, how: str, length: int, znorm: bool):
  """(train_x, train_y, test_x, test_y, class_names) of the set `name` under `root`."""
  train_path, test_path = find(root, name)
  train, train_labels, declared = parse_ts(train_path)
  test, test_labels, _ = parse_ts(test_path)
  if train[0].shape[0] != test[0].shape[0]:
    raise DataError(f"{test_path}: {test[0].shape[0]} channels but {train_path} has {train[0].shape[0]}")
  names = list(declared) if declared else sorted(set(train_labels))
  unknown = sorted(set(test_labels) - set(names))
  if unknown:
    raise DataError(f"{test_path}: labels {unknown} do not occur in {train_path}")
  if num_classes and len(names) > num_classes:
    raise DataError(f"{train_path}: {len(names)} classes, more than config.data.num_classes={num_classes}")
  lengths = {s.shape[-1] for s in train + test}
  length = length or max(lengths)
  equal = lengths == {length}  # Decided for the whole set, so both splits get one layout.
  index = {n: i for i, n in enumerate(names)}
  return (to_array(train, length, how, znorm, equal),
          np.array([index[l] for l in train_labels], np.int32),
          to_array(test, length, how, znorm, equal),
          np.array([index[l] for l in test_labels], np.int32), tuple(names))
