"""`cnnjax exp reproduce`: train a run again from its records and compare, metric by metric."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cnnjax
from cnnjax import config as config_lib
from cnnjax.errors import UsageError
from cnnjax.exp.table import format_table
from cnnjax.runs import records
from cnnjax.runs.metrics import TIMING
from cnnjax.runs.reader import read_run

# What a run delivers, from summary.json, compared besides the per-epoch metrics.
RESULTS = ("selected_epoch", "test_accuracy", "test_loss", "final_test_accuracy")

def code_differences(run: dict[str, Any]) -> list[str]:
  """How the code here differs from the code the run recorded (empty: the same)."""
  recorded = run.get("git", {})
  current, _ = records.code_state(Path(cnnjax.__file__).parent)
  notes = []
  if recorded.get("commit") != current.get("commit"):
    notes.append(f"commit {current.get('commit')} differs from the recorded {recorded.get('commit')}")
  if recorded.get("diff_sha256") != current.get("diff_sha256"):
    notes.append("uncommitted changes differ from the recorded ones "
                 f"({recorded.get('diff_file', 'none recorded')})")
  return notes


def compare_metrics(old: list[dict], new: list[dict]) -> list[dict[str, Any]]:
  """Per metric: final values, largest absolute difference over epochs, exact or not."""
  keys = [k for k in (old[0] if old else {}) if k not in TIMING]
  rows = []
  for key in keys:
    pairs = [(a.get(key), b.get(key)) for a, b in zip(old, new)]
    numeric = all(isinstance(a, (int, float)) and isinstance(b, (int, float)) for a, b in pairs)
    largest = max((abs(a - b) for a, b in pairs), default=0.0) if numeric else None
    exact = len(old) == len(new) and all(a == b or (isinstance(a, float) and isinstance(b, float)
                                                    and math.isnan(a) and math.isnan(b))
                                         for a, b in pairs)
    rows.append({"metric": key, "original": old[-1].get(key) if old else None,
                 "reproduced": new[-1].get(key) if new else None,
                 "max_abs_diff": largest, "exact": exact})
  return rows


def reproduce(run: str | Path, workdir: str | Path | None = None,
              overrides: dict[str, Any] | None = None, log=print) -> dict[str, Any]:
  """Trains the run's saved config into `workdir` (default RUN-repro) and compares."""
  original = read_run(Path(run))
  if not original.config:
    raise UsageError(f"{run} holds no config.json: not a run directory")
  for note in code_differences(original.run):
    log(f"warning: {note}; the reproduction may differ")
  config = config_lib.from_dict(original.config)
  config.dvclive = ""  # The original's DVCLive folder stays the original's.
  config_lib.apply_overrides(config, overrides)
  workdir = Path(workdir or f"{str(Path(run)).rstrip('/')}-repro")
  cnnjax.train_and_evaluate(config, workdir)
  again = read_run(workdir)
  rows = compare_metrics(original.metrics(), again.metrics())
  results = lambda summary: {k: summary[k] for k in RESULTS if k in summary}
  rows += compare_metrics([results(original.summary)], [results(again.summary)])
  return {"original": str(run), "reproduction": str(workdir), "rows": rows,
          "exact": bool(rows) and all(r["exact"] for r in rows)}


def format_report(report: dict[str, Any]) -> str:
  fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else str(v)
  rows = [[r["metric"], fmt(r["original"]), fmt(r["reproduced"]),
           "" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.3g}",
           "exact" if r["exact"] else "DIFFERS"] for r in report["rows"]]
  lines = [format_table(["metric", "original", "reproduced", "max |diff|", "match"], rows,
                        right=(1, 2, 3))]
  verdict = "exact match" if report["exact"] else "does NOT match exactly"
  lines.append(f"\n{report['reproduction']} {verdict} of {report['original']}")
  return "\n".join(lines)
