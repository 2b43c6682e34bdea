"""Arrays whose rows stay on disk until a batch asks for them (streaming sources).

`array[index]` (an index array, a boolean mask, a slice or an int) reads those rows into
a NumPy array; `subset(index)` is a view of some rows that reads nothing; `np.asarray`
reads everything. The input pipeline reads a streaming array's batches ahead of the step
with `read_threads` threads in `workers` processes (config.data.read_threads, .workers).
"""
from __future__ import annotations

import numpy as np

from cnnjax.errors import ConfigError


def check_readers(read_threads: int, workers: int) -> None:
  """The reading fields of a streaming source (config.data.read_threads, .workers)."""
  if read_threads < 1:
    raise ConfigError("data.read_threads", "must be >= 1")
  if workers < 0:
    raise ConfigError("data.workers", "must be >= 0 (0 = read in the training process)")


class StreamingArray:
  """Rows `rows` of a random-access source; subclasses read them (`_read`)."""

  def __init__(self, row_shape: tuple[int, ...], dtype, rows: np.ndarray, read_threads: int,
               workers: int):
    self._row_shape, self.dtype, self._rows = tuple(row_shape), np.dtype(dtype), rows
    self.read_threads, self.workers = read_threads, workers

  def _read(self, rows: np.ndarray) -> np.ndarray:
    """The source's rows `rows`, as an array of shape (len(rows), *row_shape)."""
    raise NotImplementedError

  @property
  def shape(self) -> tuple[int, ...]:
    return (len(self._rows), *self._row_shape)

  @property
  def ndim(self) -> int:
    return len(self.shape)

  def __len__(self) -> int:
    return len(self._rows)

  def subset(self, index) -> "StreamingArray":
    view = object.__new__(type(self))
    view.__dict__.update(self.__dict__, _rows=self._rows[index])
    return view

  def __getitem__(self, index) -> np.ndarray:
    rows = self._rows[index]
    if np.ndim(rows) == 0:
      return self._read(np.atleast_1d(rows))[0]
    return self._read(rows)

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    out = self[:]
    return out if dtype is None else out.astype(dtype)
