"""Helpers the tests (and benchmarks/fault_soak.py) share: paths, synthetic IDX data,
a run's comparable metrics and latest checkpoint. Fixtures live in conftest.py."""
import gzip
import struct
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NUM_DEVICES = 8


def write_idx(path: Path, array: np.ndarray) -> Path:
  """Writes a uint8 array as an IDX file, gzipped when `path` ends in .gz."""
  raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
  raw += b"".join(struct.pack(">I", d) for d in array.shape) + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
  return path


def synthetic_digits(n: int, seed: int, size: int = 12, classes: int = 4):
  """Learnable images: class k is a bright horizontal bar in row band k, plus noise."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, n).astype(np.uint8)
  images = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
  band = size // classes
  for i, k in enumerate(labels):
    images[i, k * band:(k + 1) * band, 1:-1] = 220
  return images, labels


def write_idx_folder(folder: Path, train: int = 288, test: int = 60, gz: bool = True) -> Path:
  folder.mkdir(parents=True, exist_ok=True)
  ext = ".gz" if gz else ""
  for split, n, seed in (("train", train, 0), ("t10k", test, 1)):
    images, labels = synthetic_digits(n, seed)
    write_idx(folder / f"{split}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", labels)
  return folder


def comparable_metrics(workdir: Path) -> list[dict]:
  """A run's metrics.jsonl records without their timing fields."""
  from cnnjax.runs.metrics import read_metrics, without_timing
  return without_timing(read_metrics(workdir / "metrics.jsonl"))


def latest_checkpoint(workdir: Path):
  """(step, arrays) of a run's latest checkpoint."""
  from cnnjax.runs.checkpoints import Checkpoints
  return Checkpoints(workdir, keep=1).restore_arrays("latest")
