"""config.dvclive: a run's records also written through DVCLive, where DVC reads them
(`dvc exp show`, `dvc plots show`, the VS Code extension's live plots).

The run directory stays the one source of truth: DVCLive's folder is rewritten from it
when a session starts (its parameters and the metrics records the run kept), then
receives each evaluation as metrics.jsonl does, and the run's final figures at its end.
A resumed run so leaves the same DVCLive files as an uninterrupted one.
"""
from __future__ import annotations

import math
from typing import Any

# Not metrics: DVCLive's step is the epoch, and "step" is its own key in metrics.json.
_NOT_METRICS = ("epoch", "step")


def _numbers(values: dict[str, Any]) -> dict[str, float]:
  return {k: v for k, v in values.items() if k not in _NOT_METRICS and not isinstance(v, bool)
          and isinstance(v, (int, float)) and math.isfinite(v)}


class LiveWriter:
  """DVCLive's logger for one run (process 0): DVCLive's step is the epoch."""

  def __init__(self, folder: str, config: dict[str, Any], history: list[dict[str, Any]]):
    from dvclive import Live
    # No experiment of its own (inside `dvc exp run`, DVC makes it) and no dvc.yaml
    # (`cnnjax dvc init` writes the stage with its metrics and plots).
    self.live = Live(folder, save_dvc_exp=False, dvcyaml=None)
    self.live.log_params(config)
    for record in history:
      self.epoch(record)

  def epoch(self, record: dict[str, Any]) -> None:
    self.live.step = record["epoch"]
    for name, value in _numbers(record).items():
      self.live.log_metric(name, value)
    self.live.make_summary()

  def end(self, summary: dict[str, Any]) -> None:
    """The run's final figures (summary.json's numbers) become DVCLive's metrics.json."""
    self.live.summary.update(_numbers(summary))
    self.live.end()
