"""`cnnjax exp show` and `exp diff`: one table of runs, and the difference of two.

Rows carry the run's name, status, start, duration, the config fields that differ
between the shown runs (or all of them) and the final and best metrics.
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import operator
import re
from pathlib import Path
from typing import Any, Sequence

from cnnjax.config import flatten
from cnnjax.runs.reader import RunRecord, find_runs, read_run

METRICS = ("test_accuracy", "best_test_accuracy", "test_loss", "train_accuracy",
           "train_loss", "epochs", "steps", "images_per_second", "wall_seconds")
INFO = ("run", "status", "started", "duration")
_OPS = {">=": operator.ge, "<=": operator.le, "!=": operator.ne, "==": operator.eq,
        ">": operator.gt, "<": operator.lt, "=": operator.eq}


class Table:
  """Rows (dicts) and the columns to show, with the output formats of `exp show`."""

  def __init__(self, columns: Sequence[str], rows: list[dict[str, Any]]):
    self.columns, self.rows = list(columns), rows

  def __len__(self):
    return len(self.rows)

  def filter(self, expressions: Sequence[str]) -> "Table":
    rows = self.rows
    for expression in expressions:
      field, op, value = parse_filter(expression)
      rows = [r for r in rows if _matches(r.get(field), op, value)]
    return Table(self.columns, rows)

  def sort(self, field: str, descending: bool = False) -> "Table":
    present = [r for r in self.rows if r.get(field) is not None]
    missing = [r for r in self.rows if r.get(field) is None]  # Always last.
    present.sort(key=lambda r: _sort_key(r[field]), reverse=descending)
    return Table(self.columns, present + missing)

  def select(self, columns: Sequence[str]) -> "Table":
    return Table(columns, self.rows)

  def to_text(self) -> str:
    cells = [self.columns] + [[_fmt(r.get(c)) for c in self.columns] for r in self.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"{r['run']}: {r['error']}" for r in self.rows if r.get("error")]
    return "\n".join(lines)

  def to_markdown(self) -> str:
    lines = ["| " + " | ".join(self.columns) + " |",
             "|" + "|".join(" --- " for _ in self.columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in self.columns) + " |"
              for r in self.rows]
    return "\n".join(lines)

  def to_csv(self) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(self.columns)
    writer.writerows([[_plain(r.get(c)) for c in self.columns] for r in self.rows])
    return out.getvalue()

  def to_json(self) -> str:
    return json.dumps([{c: r.get(c) for c in self.columns} for r in self.rows], indent=2,
                      default=str)


def parse_filter(expression: str) -> tuple[str, str, Any]:
  """'test_accuracy>=0.99' -> ('test_accuracy', '>=', 0.99)."""
  match = re.fullmatch(r"\s*([\w.]+)\s*(>=|<=|!=|==|>|<|=)\s*(.*?)\s*", expression)
  if not match:
    raise ValueError(f"filter {expression!r} is not FIELD OP VALUE (OP: {' '.join(_OPS)})")
  field, op, raw = match.groups()
  try:
    value = json.loads(raw)
  except ValueError:
    value = raw
  return field, op, value


def _matches(actual, op: str, value) -> bool:
  if actual is None:
    return False
  if isinstance(actual, list):
    actual = tuple(actual)
  if isinstance(value, list):
    value = tuple(value)
  try:
    return _OPS[op](actual, value)
  except TypeError:
    return _OPS[op](str(actual), str(value))


def _sort_key(value):
  return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _plain(value) -> Any:
  if isinstance(value, (list, tuple)):
    return str(tuple(value))
  return "" if value is None else value


def _fmt(value) -> str:
  if isinstance(value, float):
    return f"{value:.4g}" if abs(value) < 100 else f"{value:,.0f}"
  return str(_plain(value))


def _duration(seconds) -> str | None:
  if seconds is None:
    return None
  m, s = divmod(int(round(seconds)), 60)
  h, m = divmod(m, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _started(run: dict) -> str | None:
  start = run.get("start_time")
  if not start:
    return None
  return datetime.datetime.fromisoformat(start).strftime("%Y-%m-%d %H:%M")


def run_name(record: RunRecord, root: Path) -> str:
  try:
    name = str(record.path.resolve().relative_to(root.resolve()))
  except ValueError:
    name = str(record.path)
  return record.path.name if name == "." else name


def differing_fields(params: Sequence[dict[str, Any]]) -> list[str]:
  """The flattened config fields whose values are not the same in every run."""
  keys = sorted({k for p in params for k in p})
  return [k for k in keys if len({json.dumps(p.get(k)) for p in params}) > 1]


def build_table(records: Sequence[tuple[str, RunRecord]], all_params: bool = False) -> Table:
  """The table of named run records: differing config fields (or all), then metrics."""
  params = [flatten(r.config) for _, r in records]
  keys = sorted({k for p in params for k in p}) if all_params else differing_fields(params)
  rows = []
  for (name, record), p in zip(records, params):
    row = {"run": name, "status": record.status, "started": _started(record.run),
           "duration": _duration(record.summary.get("wall_seconds")), "error": record.error}
    row.update({k: tuple(v) if isinstance(v, list) else v for k, v in p.items() if k in keys})
    row.update({m: record.summary.get(m) for m in METRICS})
    rows.append(row)
  return Table(list(INFO) + keys + list(METRICS), rows)


def show(roots: Sequence[str | Path], all_params: bool = False) -> Table:
  """Every run under the roots (a root may itself be a run directory)."""
  records = []
  for root in map(Path, roots):
    prefix = f"{root.name}/" if len(roots) > 1 else ""
    records += [(prefix + run_name(r, root), r) for r in map(read_run, find_runs(root))]
  return build_table(records, all_params)


def diff(a: str | Path, b: str | Path) -> dict[str, Any]:
  """Config fields that differ, and every metric of both runs with its delta (b - a)."""
  ra, rb = read_run(Path(a)), read_run(Path(b))
  pa, pb = flatten(ra.config), flatten(rb.config)
  params = {k: (pa.get(k), pb.get(k)) for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)}
  metrics = {}
  for m in ("status",) + METRICS:
    va, vb = (ra.status, rb.status) if m == "status" else (ra.summary.get(m), rb.summary.get(m))
    numeric = isinstance(va, (int, float)) and isinstance(vb, (int, float))
    metrics[m] = (va, vb, vb - va if numeric else None)
  return {"runs": (str(a), str(b)), "params": params, "metrics": metrics}


def format_diff(result: dict[str, Any]) -> str:
  a, b = result["runs"]
  lines = [f"A: {a}", f"B: {b}", "", "config fields that differ:"]
  lines += [f"  {k}: {_fmt(va)} -> {_fmt(vb)}" for k, (va, vb) in result["params"].items()]
  if not result["params"]:
    lines.append("  (none)")
  lines += ["", f"  {'metric':<20} {'A':>12} {'B':>12} {'B - A':>12}"]
  for m, (va, vb, delta) in result["metrics"].items():
    d = "" if delta is None else f"{delta:+.4f}" if abs(delta) < 10 else f"{delta:+,.0f}"
    lines.append(f"  {m:<20} {_fmt(va):>12} {_fmt(vb):>12} {d:>12}")
  return "\n".join(lines)
