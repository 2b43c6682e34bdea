"""Per-epoch metrics: JSON lines (metrics.jsonl) and TensorBoard events.

The events are written by TensorBoard's own event file writer (the `tensorboard`
package), which needs neither TensorFlow nor PyTorch."""
from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cnnjax.files import atomic_write, read_json_lines


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
  through one background thread, which also imports TensorBoard's writer while training
  starts; `close` waits for it.
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
    self._tb = self._events.submit(_event_writer, workdir / "tensorboard",
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
    from tensorboard.compat.proto import event_pb2, summary_pb2
    values = [summary_pb2.Summary.Value(tag=key, simple_value=value)
              for key, value in record.items()
              if key != "step" and isinstance(value, (int, float)) and math.isfinite(value)]
    writer = self._tb.result()
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=record["step"],
                                     summary=summary_pb2.Summary(value=values)))
    writer.flush()

  def hparams(self, hparams: dict[str, Any], metrics: dict[str, Any], step: int) -> None:
    """TensorBoard's HParams summary of the run (its session with these field values,
    what the dashboard's table and parallel coordinates show) and its final `metrics`
    as scalars "summary/NAME" at `step` (apart from the curves of the same names), which
    the dashboard lists beside them."""
    if self._events is not None:
      self._events.submit(self._add_hparams, hparams, metrics, step)

  def _add_hparams(self, hparams: dict[str, Any], metrics: dict[str, Any], step: int) -> None:
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2
    writer = self._tb.result()
    summary = summary_v2.hparams_pb(hparams, trial_id=str(self.path.parent.name))
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
    self._add_scalars({"step": step, **{f"summary/{k}": v for k, v in metrics.items()}})

  def close(self) -> None:
    """Waits for the pending TensorBoard events; raises what writing them raised."""
    if self._events is not None:
      self._events.submit(lambda: self._tb.result().close())
      self._events.shutdown(wait=True)
      self._events = None
      self._tb.result()


def _event_writer(logdir: Path, purge_step: int | None):
  """TensorBoard's event file writer for `logdir`. With `purge_step`, its first event tells
  TensorBoard to drop the events of earlier sessions from that step on (what a session
  killed after its last checkpoint wrote), as a resumed run writes them again."""
  from tensorboard.compat.proto import event_pb2
  from tensorboard.summary.writer.event_file_writer import EventFileWriter
  writer = EventFileWriter(str(logdir))
  if purge_step is not None:
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=purge_step,
                                     session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
  return writer
