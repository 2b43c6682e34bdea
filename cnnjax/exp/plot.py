"""`cnnjax exp plot`: learning curves of several runs in one figure (PNG, SVG or PDF)."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

from cnnjax.errors import UsageError
from cnnjax.exp.table import differing_fields, runs_params
from cnnjax.runs.reader import read_run


def curve_labels(records, max_fields: int = 3) -> list[str]:
  """Each run's label: the config fields that differ between the runs, else its name."""
  params = runs_params(records)
  keys = differing_fields(params)
  labels = []
  for record, p in zip(records, params):
    parts = [f"{k.split('.')[-1]}={_value(p.get(k))}" for k in keys]
    if not parts:
      labels.append(record.path.name)
    elif len(parts) > max_fields:  # Many differences: the name leads, a few fields follow.
      labels.append(f"{record.path.name}: " + ", ".join(parts[:max_fields]) + ", ...")
    else:
      labels.append(", ".join(parts))
  if len(set(labels)) < len(labels):  # Same config twice: the names tell them apart.
    labels = [f"{r.path.name}: {l}" for r, l in zip(records, labels)]
  return [textwrap.fill(l, 70) for l in labels]


def _value(v):
  return tuple(v) if isinstance(v, list) else v


def plot_runs(runs: Sequence[str | Path], metric: str = "val_accuracy",
              output: str | Path = "curves.png") -> Path:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  records = [read_run(Path(r)) for r in runs]
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  for record, label in zip(records, curve_labels(records)):
    points = [(m["epoch"], m[metric]) for m in record.metrics() if metric in m]
    if not points:
      raise UsageError(f"{record.path}: no '{metric}' in metrics.jsonl")
    ax.plot(*zip(*points), marker="o", markersize=3, label=label)
  ax.set_xlabel("epoch")
  ax.set_ylabel(metric.replace("_", " "))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
  output = Path(output)
  output.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(output, bbox_inches="tight")  # Format from the suffix: .png, .svg, .pdf.
  plt.close(fig)
  return output
