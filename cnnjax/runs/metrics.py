"""Per-epoch metrics: JSON lines (metrics.jsonl) and TensorBoard events (tensorboardX)."""
from __future__ import annotations

import json
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cnnjax.runs.files import atomic_write, read_json_lines


# Fields that measure time: they differ between two runs that computed the same thing.
TIMING = frozenset({"images_per_second", "train_seconds", "wall_seconds", "startup_seconds"})


def without_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The records with their timing fields removed: what a rerun must reproduce."""
  return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


# The one JSON-lines reader: it skips a torn last line (a writer killed mid-line).
read_metrics = read_json_lines


class MetricsWriter:
  """Appends one record per epoch; on resume keeps only records up to `resume_step`,
  so no step appears twice.

  metrics.jsonl is written (and fsynced) before `write` returns. TensorBoard events go
  through one background thread, which also imports tensorboardX (seconds, when it finds
  PyTorch installed) while training starts; `close` waits for it.
  """

  def __init__(self, workdir: Path, resume_step: int, enabled: bool = True):
    """`enabled=False` (processes other than 0) keeps the records in memory only."""
    self.path = workdir / "metrics.jsonl"
    kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
    self.records, self._tb, self._events = kept, None, None
    if not enabled:
      return
    with atomic_write(self.path) as f:
      f.write("".join(json.dumps(r) + "\n" for r in kept))
    self._events = ThreadPoolExecutor(1, thread_name_prefix="tensorboard")
    # purge_step makes TensorBoard drop events a killed session wrote past the resume point.
    self._tb = self._events.submit(_summary_writer, workdir / "tensorboard",
                                   resume_step + 1 if resume_step else None)

  def write(self, record: dict[str, Any]) -> None:
    self.records.append(record)
    if self._events is None:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
      f.flush()
      os.fsync(f.fileno())
    self._events.submit(self._add_scalars, record)

  def _add_scalars(self, record: dict[str, Any]) -> None:
    tb = self._tb.result()
    for key, value in record.items():
      if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
        tb.add_scalar(key, value, record["step"])
    tb.flush()

  def close(self) -> None:
    """Waits for the pending TensorBoard events; raises what writing them raised."""
    if self._events is not None:
      self._events.submit(lambda: self._tb.result().close())
      self._events.shutdown(wait=True)
      self._events = None
      self._tb.result()


def _summary_writer(logdir: Path, purge_step: int | None):
  # tensorboardX imports PyTorch whenever it is installed (the bench extra), only to
  # accept torch tensors: seconds of CPU at the start of training. Hidden from it here
  # unless this process already uses PyTorch.
  hide_torch = "torch" not in sys.modules
  if hide_torch:
    sys.modules["torch"] = None  # Makes `import torch` raise ImportError.
  try:
    from tensorboardX import SummaryWriter  # Writes event files without TensorFlow.
  finally:
    if hide_torch:
      del sys.modules["torch"]
  return SummaryWriter(str(logdir), purge_step=purge_step)
