"""Per-epoch metrics: JSON lines (metrics.jsonl) and TensorBoard events (tensorboardX)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


# Fields that measure time: they differ between two runs that computed the same thing.
TIMING = frozenset({"images_per_second", "train_seconds", "wall_seconds"})


def without_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The records with their timing fields removed: what a rerun must reproduce."""
  return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def read_metrics(path: Path) -> list[dict[str, Any]]:
  """The complete lines of a metrics.jsonl; a torn last line (killed writer) is skipped."""
  records = []
  try:
    lines = path.read_text().splitlines()
  except FileNotFoundError:
    return records
  for line in lines:
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      continue
  return records


class MetricsWriter:
  """Appends one record per epoch; on resume keeps only records up to `resume_step`,
  so no step appears twice."""

  def __init__(self, workdir: Path, resume_step: int, enabled: bool = True):
    """`enabled=False` (processes other than 0) keeps the records in memory only."""
    self.path = workdir / "metrics.jsonl"
    kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
    self.records, self._tb = kept, None
    if not enabled:
      return
    tmp = self.path.with_name(".metrics.jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, self.path)
    from tensorboardX import SummaryWriter  # Writes event files without TensorFlow.
    # purge_step makes TensorBoard drop events a killed session wrote past the resume point.
    self._tb = SummaryWriter(str(workdir / "tensorboard"),
                             purge_step=resume_step + 1 if resume_step else None)

  def write(self, record: dict[str, Any]) -> None:
    self.records.append(record)
    if self._tb is None:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
      f.flush()
      os.fsync(f.fileno())
    for key, value in record.items():
      if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
        self._tb.add_scalar(key, value, record["step"])
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
