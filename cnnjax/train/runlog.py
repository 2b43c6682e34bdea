"""What a run writes about itself besides checkpoints: metrics.jsonl (and TensorBoard),
summary.json and the run's clock, over all its sessions; and how the delivered epoch is
chosen (config.checkpoint.select, on the validation split and training metrics only)."""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

from cnnjax import config as config_lib
from cnnjax import models
from cnnjax.files import read_json
from cnnjax.runs import records
from cnnjax.runs.live import LiveWriter
from cnnjax.runs.metrics import MetricsWriter
from cnnjax.train import distributed


def selection_score(record: dict, rule: str) -> float:
  """How good an evaluated epoch is under checkpoint.select (higher is better); "last"
  prefers the latest. Never reads a test metric."""
  if rule in ("val_accuracy", "ema_val_accuracy"):
    return record[rule]
  if rule == "train_loss":
    return -record["train_loss"]
  return record["step"]


@dataclasses.dataclass
class Clock:
  """Seconds of a run, the sessions before a resume included."""
  start: float  # time.time() when this session started
  before: float  # Wall seconds of the sessions before this one
  train: float  # Seconds spent training (evaluations excluded), all sessions

  def wall(self) -> float:
    return self.before + time.time() - self.start


class RunLog:
  """What the loop writes about a run besides checkpoints: metrics.jsonl (and TensorBoard,
  and DVCLive with config.dvclive), summary.json (process 0 only), and the run's clock,
  over all its sessions."""

  def __init__(self, run, workdir: Path, state, wall_start: float):
    self.run, self.path = run, workdir / "summary.json"
    self.step = int(state.step)
    self.enabled = distributed.is_writer()
    self.lines = MetricsWriter(workdir, self.step, enabled=self.enabled)
    last = self.lines.records[-1] if self.lines.records else {}
    self.clock = Clock(wall_start, last.get("wall_seconds", 0.0), last.get("train_seconds", 0.0))
    self.best = max((selection_score(r, run.rule) for r in self.lines.records), default=-math.inf)
    self.summary = summary_start(run, state)
    self.live = None
    if self.enabled and run.config.dvclive:
      self.live = LiveWriter(run.config.dvclive, config_lib.to_dict(run.config), self.lines.records)
    self._write({**self.summary, **self.metrics()})

  def selected_step(self) -> int | None:
    """The step of the epoch checkpoint.select picks among those recorded."""
    return selected_record(self.lines.records, self.run.rule)["step"] if self.lines.records else None

  def metrics(self) -> dict[str, Any]:
    return summary_metrics(self.lines.records, self.run.batch_size, self.run.rule)

  def epoch(self, record: dict[str, Any]) -> bool:
    """Writes an evaluation's record; whether its epoch is the best so far (to keep)."""
    self.lines.write(record)
    self._write({**self.summary, **self.metrics()})
    if self.live:
      self.live.epoch(record)
    print(f"epoch {record['epoch']}/{self.run.config.num_epochs}  " + epoch_line(record), flush=True)
    score = selection_score(record, self.run.rule)
    is_selected, self.best = score > self.best, max(self.best, score)
    return is_selected

  def early_stop(self) -> str | None:
    """Why the run stops now (config.early_stopping), or None."""
    e = self.run.config.early_stopping
    return early_stop(self.lines.records, self.run.rule, e.patience, e.min_delta)

  def close(self, status: str, error: str | None) -> None:
    self.summary.update(self.metrics(), status=status, ended=records.now(),
                        wall_seconds=self.clock.wall())
    if error:
      self.summary["error"] = error
    if status in ("finished", "paused"):  # A paused run shows its figures so far.
      self.lines.hparams(hparams(self.run.config, self.path.parent),
                         {k: self.summary[k] for k in HPARAMS_METRICS if k in self.summary},
                         self.summary.get("steps", 0))
    self.lines.close()
    try:
      self._write(self.summary)
      if self.live:
        self.live.end(self.summary)
    except OSError as e:  # E.g. the disk filled up: keep the original error in view.
      print(f"cnnjax: could not write {self.path}: {e}", file=sys.stderr)

  def _write(self, summary: dict[str, Any]) -> None:
    if self.enabled:
      records.write_json(self.path, summary)


# The final figures the HParams dashboard shows for a finished run.
HPARAMS_METRICS = ("test_accuracy", "final_test_accuracy", "final_ema_test_accuracy",
                   "val_accuracy", "ema_val_accuracy", "train_loss", "wall_seconds")


def hparams(config, workdir: Path) -> dict[str, Any]:
  """The run's fields for TensorBoard's HParams dashboard: those its sweep varies
  (records.HPARAMS_FIELDS, written by `cnnjax sweep`), or every scalar field of a lone run
  but pause_at_epoch (TensorBoard keeps a run's first values, and a paused run's next
  session has another); tuples as text."""
  scalar = lambda v: isinstance(v, (bool, int, float, str))
  values = config_lib.flatten(config_lib.to_dict(config))
  fields = read_json(workdir / records.HPARAMS_FIELDS)
  if fields is None:
    fields = [k for k, v in values.items() if scalar(v) and k != "pause_at_epoch"]
  out = {}
  for k in fields:
    v = values.get(k)
    if v is not None:
      out[k] = v if scalar(v) else str(tuple(v) if isinstance(v, list) else v)
  return out


def summary_start(run, state) -> dict[str, Any]:
  """What summary.json says of a run before its first evaluation."""
  dataset = run.dataset
  return {"status": "running", "params": models.param_count(state.params),
          "batch_size": run.batch_size,
          "steps_per_epoch": run.periods.steps_per_epoch, "total_steps": run.periods.total_steps,
          "input_shape": list(dataset.input_shape),
          "input_dtype": str(dataset.train_images.dtype), "num_classes": dataset.num_classes,
          "class_names": list(dataset.class_names), "checkpoint_select": run.rule,
          "train_examples": len(dataset.train_labels),
          "validation_examples": 0 if dataset.val_labels is None else len(dataset.val_labels),
          "test_examples": len(dataset.test_labels)}


def early_stop(history: list[dict], rule: str, patience: int, min_delta: float) -> str | None:
  """Why the run stops after the last of these records (config.early_stopping), or None:
  `patience` epochs since the last that improved the best selection score by at least
  `min_delta`. Read from the records alone, so a resumed run decides the same."""
  if not patience or not history:
    return None
  best, best_epoch = -math.inf, 0
  for record in history:
    score = selection_score(record, rule)
    if score > best + min_delta:
      best, best_epoch = score, record["epoch"]
  stale = history[-1]["epoch"] - best_epoch
  if stale < patience:
    return None
  metric = "train loss" if rule == "train_loss" else rule
  by = f" by {min_delta:g} or more" if min_delta else ""
  return (f"stopped early at epoch {history[-1]['epoch']}: {metric} did not improve{by} in "
          f"{stale} epochs since epoch {best_epoch}")


def epoch_line(record: dict) -> str:
  parts = [f"{split} loss {record[split + '_loss']:.4f} acc {record[split + '_accuracy']:.4f}"
           for split in ("train", "val", "test", "ema_val", "ema_test") if split + "_loss" in record]
  return "  ".join(parts + [f"{record['images_per_second']:,.0f} img/s"])


def selected_record(history: list[dict], rule: str) -> dict:
  """The record of the epoch checkpoint.select picks: the best score, the earliest of
  equals (as the loop saves it)."""
  return max(history, key=lambda r: selection_score(r, rule))


def summary_metrics(history: list[dict], batch_size: int, rule: str) -> dict[str, Any]:
  """Training, validation and selection figures of a run from its metrics records (the
  test figures come from `_test_results`, once the run ends)."""
  if not history:
    return {"steps": 0, "epochs": 0}
  last = history[-1]
  selected = selected_record(history, rule)
  out = {
      "train_accuracy": last["train_accuracy"], "train_loss": last["train_loss"],
      "selected_epoch": selected["epoch"],
      "steps": last["step"], "epochs": last["epoch"],
      "train_seconds": last["train_seconds"],
      "images_per_second": last["step"] * batch_size / max(last["train_seconds"], 1e-9),
  }
  if "val_accuracy" in last:
    out.update(val_accuracy=selected["val_accuracy"], val_loss=selected["val_loss"],
               best_val_accuracy=max(r["val_accuracy"] for r in history))
  if "ema_val_accuracy" in last:
    out.update(ema_val_accuracy=selected["ema_val_accuracy"], ema_val_loss=selected["ema_val_loss"],
               best_ema_val_accuracy=max(r["ema_val_accuracy"] for r in history))
  return out
