"""Reading run directories without trusting them: for tables, diffs, plots, reproduction.

A file that is missing or does not parse counts as absent; a run whose summary says
"running" while no live process holds its lock was killed, and reads as interrupted.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from cnnjax.files import read_json
from cnnjax.runs.metrics import read_metrics
from cnnjax.runs.records import Lock

_NOT_RUNS = {"checkpoints", "selected", "tensorboard", "code", "eval", "viz"}


@dataclasses.dataclass
class RunRecord:
  path: Path
  config: dict[str, Any]
  run: dict[str, Any]
  summary: dict[str, Any]
  status: str  # finished, paused (config.pause_at_epoch), failed, interrupted, running
  error: str | None

  def metrics(self) -> list[dict[str, Any]]:
    return read_metrics(self.path / "metrics.jsonl")


def _load(path: Path) -> dict[str, Any]:
  try:
    value = read_json(path)
  except (OSError, ValueError):
    return {}
  return value if isinstance(value, dict) else {}


def read_run(path: Path) -> RunRecord:
  path = Path(path)
  summary = _load(path / "summary.json")
  status, error = summary.get("status", "running"), summary.get("error")
  if status == "running" and not Lock(path).is_held():
    status = "interrupted"
    error = error or "the training process ended without a final status (killed?)"
  return RunRecord(path, _load(path / "config.json"), _load(path / "run.json"), summary,
                   status, error)


def find_runs(root: Path) -> list[Path]:
  """Run directories (holding a config.json) under `root`, sorted; `root` itself counts."""
  root = Path(root)
  found = []
  for folder, subdirs, files in os.walk(root):
    subdirs[:] = sorted(d for d in subdirs if d not in _NOT_RUNS and not d.startswith("."))
    if "config.json" in files:
      found.append(Path(folder))
      subdirs[:] = []  # A run does not nest runs.
  return found
