"""`cnnjax exp show` and `exp diff`: one table of runs, and the difference of two.

Rows carry the run's name, status, start, duration, the config fields that differ
between the shown runs (or all of them) and the run's metrics. `aggregate_table` puts runs
whose configs differ only in one field (the seed) in one row, with each metric's mean and
standard deviation.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import io
import json
import math
import operator
import re
import statistics
import textwrap
from pathlib import Path
from typing import Any, Sequence

from cnnjax.config import flatten
from cnnjax.errors import ConfigError, UsageError
from cnnjax.exp import halving
from cnnjax.runs.reader import RunRecord, find_runs, read_run

METRICS = ("test_accuracy", "final_test_accuracy", "val_accuracy", "best_val_accuracy",
           "selected_epoch", "test_loss", "train_accuracy", "train_loss", "epochs", "steps",
           "images_per_second", "wall_seconds")
# Shown where some run has them: the moving average's figures, and the checkpoint step
# and content hash a run started from (config.init).
OPTIONAL = ("ema_val_accuracy", "final_ema_test_accuracy", "init_step", "init_sha256")
AVERAGED_OPTIONAL = OPTIONAL[:2]  # The metrics among them (`aggregate_table`).
INFO = ("run", "status", "started", "duration")
_OPS = {">=": operator.ge, "<=": operator.le, "!=": operator.ne, "==": operator.eq,
        ">": operator.gt, "<": operator.lt, "=": operator.eq}


class Table:
  """Rows (dicts) and the columns to show, with the output formats of `exp show`.

  In an aggregated table each metric M of `aggregated` is two columns, M_mean and M_std
  (CSV, JSON); text and Markdown show them as one column M, "mean ± std". Filters,
  sorting and column choices may name M for M_mean.
  """

  def __init__(self, columns: Sequence[str], rows: list[dict[str, Any]],
               aggregated: Sequence[str] = ()):
    self.columns, self.rows, self.aggregated = list(columns), rows, tuple(aggregated)

  def __len__(self):
    return len(self.rows)

  def _field(self, name: str) -> str:
    return f"{name}_mean" if name in self.aggregated else name

  def filter(self, expressions: Sequence[str]) -> "Table":
    rows = self.rows
    for expression in expressions:
      field, op, value = parse_filter(expression)
      rows = [r for r in rows if _matches(r.get(self._field(field)), op, value)]
    return Table(self.columns, rows, self.aggregated)

  def sort(self, field: str, descending: bool = False) -> "Table":
    """Rows by `field`, those without it last; paused runs (stopped by halving) always
    below the others."""
    field = self._field(field)
    present = [r for r in self.rows if r.get(field) is not None]
    missing = [r for r in self.rows if r.get(field) is None]  # Always last.
    present.sort(key=lambda r: _sort_key(r[field]), reverse=descending)
    return Table(self.columns, _paused_last(present + missing, furthest_first=False),
                 self.aggregated)

  def select(self, columns: Sequence[str]) -> "Table":
    expanded = [part for c in columns
                for part in ((f"{c}_mean", f"{c}_std") if c in self.aggregated else (c,))]
    return Table(expanded, self.rows, self.aggregated)

  def _shown(self) -> tuple[list[str], list[list[str]]]:
    """Header and cells for people: M_mean and M_std merged into "mean ± std"."""
    header, getters = [], []
    for c in self.columns:
      metric = c[:-len("_mean")] if c.endswith("_mean") else None
      if metric in self.aggregated:
        header.append(metric)
        getters.append(lambda r, m=metric: mean_std(r.get(f"{m}_mean"), r.get(f"{m}_std"),
                                                    percent=m.endswith("accuracy")))
      elif not (c.endswith("_std") and c[:-len("_std")] in self.aggregated):
        header.append(c)
        getters.append(lambda r, c=c: _fmt(r.get(c)))
    return header, [[get(r) for get in getters] for r in self.rows]

  def to_text(self) -> str:
    lines = [format_table(*self._shown())]
    lines += [f"{r['run']}: {r['error']}" for r in self.rows if r.get("error")]
    return "\n".join(lines)

  def to_markdown(self) -> str:
    header, body = self._shown()
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in body]
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


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                 right: Sequence[int] = ()) -> str:
  """Columns of text two spaces apart, the header over a rule of dashes: the one text-table
  layout of the commands (exp show, exp diff, exp reproduce, eval). The columns whose
  positions are in `right` (numbers) align right; lines end without spaces."""
  cells = [list(header)] + [list(row) for row in rows]
  widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
  lines = ["  ".join(v.rjust(w) if i in right else v.ljust(w)
                     for i, (v, w) in enumerate(zip(row, widths))).rstrip() for row in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def parse_filter(expression: str) -> tuple[str, str, Any]:
  """'test_accuracy>=0.99' -> ('test_accuracy', '>=', 0.99)."""
  match = re.fullmatch(r"\s*([\w.]+)\s*(>=|<=|!=|==|>|<|=)\s*(.*?)\s*", expression)
  if not match:
    raise UsageError(f"filter {expression!r} is not FIELD OP VALUE (OP: {' '.join(_OPS)})")
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


def mean_std(mean, std, percent: bool = False) -> str:
  """"mean ± std" rounded to what the spread supports: the standard deviation to one
  significant digit, the mean to the same decimal place; with `percent`, in %."""
  if mean is None:
    return ""
  unit, scale = (" %", 100.0) if percent else ("", 1.0)
  if std is None:
    return _fmt(mean * scale) + unit
  mean, std = mean * scale, std * scale
  if std == 0:
    return f"{_fmt(mean)} ± 0{unit}"
  decimals = lambda s: max(0, -math.floor(math.log10(s)))
  places = decimals(float(f"{std:.1g}"))  # 0.096 rounds to 0.1: one decimal, not two.
  return f"{mean:.{places}f} ± {std:.{places}f}{unit}"


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


def runs_params(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
  """Each run's flattened config. A field that some of the runs have and another lacks
  (added to cnnjax after that run) reads as its default for that run's model and data
  source, so that runs of one experiment compare equal across versions; only then are
  the model's and source's classes imported. `pause_at_epoch` is left out: the status
  says where a paused run stopped."""
  params = [flatten(r.config) for r in records]
  for p in params:
    p.pop("pause_at_epoch", None)
  keys = set().union(*params)
  for p in params:
    if keys - p.keys():
      defaults = _defaults(p.get("model.name", "cnn"), p.get("data.source", "idx"))
      p.update({k: defaults[k] for k in keys - p.keys() if k in defaults})
  return params


@functools.cache
def _defaults(model: str, source: str) -> dict[str, Any]:
  from cnnjax import config as config_lib
  config = config_lib.base_config()
  try:
    config_lib.select(config, "model.name", model)
    config_lib.select(config, "data.source", source)
  except ConfigError:  # A model or source that cannot be imported here: no defaults.
    return {}
  return flatten(config_lib.to_dict(config))


def differing_fields(params: Sequence[dict[str, Any]]) -> list[str]:
  """The flattened config fields whose values are not the same in every run."""
  keys = sorted({k for p in params for k in p})
  return [k for k in keys if len({json.dumps(p.get(k)) for p in params}) > 1]


def _paused_last(rows: list[dict[str, Any]], furthest_first: bool = True) -> list[dict[str, Any]]:
  """The rows in their order, except that paused ones (a halving sweep's stopped points)
  come after the others, and (with `furthest_first`) those that got further first."""
  def key(row):
    epoch = row.get("paused_at_epoch")
    return (0, 0) if epoch is None else (1, -epoch if furthest_first else 0)
  return sorted(rows, key=key)


def build_table(records: Sequence[tuple[str, RunRecord]], all_params: bool = False) -> Table:
  """The table of named run records: differing config fields (or all), then metrics;
  paused runs last."""
  params = runs_params([r for _, r in records])
  keys = sorted({k for p in params for k in p}) if all_params else differing_fields(params)
  rows = []
  for (name, record), p in zip(records, params):
    row = {"run": name, "status": record.status, "started": _started(record.run),
           "duration": _duration(record.summary.get("wall_seconds")), "error": record.error,
           "paused_at_epoch": _paused_at(record)}
    row.update({k: tuple(v) if isinstance(v, list) else v for k, v in p.items() if k in keys})
    row.update({m: record.summary.get(m) for m in METRICS})
    row.update(_optional(record))
    rows.append(row)
  optional = [c for c in OPTIONAL if any(r.get(c) is not None for r in rows)]
  return Table(list(INFO) + keys + list(METRICS) + optional, _paused_last(rows))


def _paused_at(record: RunRecord) -> int | None:
  return record.summary.get("paused_at_epoch") if record.summary.get("status") == "paused" else None


def _optional(record: RunRecord) -> dict[str, Any]:
  init = (record.run or {}).get("init") or {}
  return {"ema_val_accuracy": record.summary.get("ema_val_accuracy"),
          "final_ema_test_accuracy": record.summary.get("final_ema_test_accuracy"),
          "init_step": init.get("step"), "init_sha256": (init.get("sha256") or "")[:12] or None}


def _group_name(names: Sequence[str], field: str) -> str:
  """The runs' common name with the field's value as "*" ("lr=0.1,seed=*")."""
  pattern = re.compile(rf"(^|[,/]){re.escape(field.split('.')[-1])}=[^,/]*")
  starred = {pattern.sub(lambda m: f"{m.group(1)}{field.split('.')[-1]}=*", n) for n in names}
  return starred.pop() if len(starred) == 1 else f"{names[0]} (+{len(names) - 1})"


def aggregate_table(records: Sequence[tuple[str, RunRecord]], field: str = "seed",
                    all_params: bool = False) -> Table:
  """One row per group of runs whose configs differ only in `field`: the group's n, its
  values of `field`, the config fields that differ between groups, and for each metric
  the mean and the sample standard deviation (None for n = 1) over the runs that have it."""
  full = runs_params([r for _, r in records])
  params = [{k: v for k, v in p.items() if k != field} for p in full]
  groups: dict[str, list[int]] = {}
  for i, p in enumerate(params):
    groups.setdefault(json.dumps(p, sort_keys=True), []).append(i)
  keys = sorted({k for p in params for k in p}) if all_params else differing_fields(params)
  rows = []
  for members in groups.values():
    statuses = [records[i][1].status for i in members]
    paused = [_paused_at(records[i][1]) for i in members]
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
    row = {"run": _group_name([records[i][0] for i in members], field), "n": len(members),
           "status": statuses[0] if len(counts) == 1 else
           ", ".join(f"{n} {s}" for s, n in counts.items()),
           field: tuple(full[i].get(field) for i in members),
           "paused_at_epoch": None if None in paused else max(paused)}
    row.update({k: tuple(v) if isinstance(v, list) else v
                for k, v in params[members[0]].items() if k in keys})
    figures = [{**records[i][1].summary, **_optional(records[i][1])} for i in members]
    for m in METRICS + AVERAGED_OPTIONAL:
      values = [f.get(m) for f in figures]
      values = [v for v in values if isinstance(v, (int, float))]
      row[f"{m}_mean"] = statistics.fmean(values) if values else None
      row[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else None
    rows.append(row)
  metrics = METRICS + tuple(m for m in AVERAGED_OPTIONAL
                            if any(r[f"{m}_mean"] is not None for r in rows))
  columns = ["run", "n", "status", field] + keys
  columns += [f"{m}_{part}" for m in metrics for part in ("mean", "std")]
  return Table(columns, _paused_last(rows), aggregated=metrics)


def show(roots: Sequence[str | Path], all_params: bool = False,
         aggregate: str | None = None) -> Table:
  """Every run under the roots (a root may itself be a run directory); with `aggregate`
  (a config field, e.g. "seed"), one row per group of runs that differ only in it."""
  records = []
  for root in map(Path, roots):
    prefix = f"{root.name}/" if len(roots) > 1 else ""
    records += _halving_status(root, [(prefix + run_name(r, root), r)
                                      for r in map(read_run, find_runs(root))])
  if aggregate:
    return aggregate_table(records, aggregate, all_params)
  return build_table(records, all_params)


def sweep_table(root: Path, names: Sequence[str]) -> Table:
  """The table `cnnjax sweep` prints: the named points under `root`."""
  return build_table(_halving_status(root, [(n, read_run(root / n)) for n in names]))


def _halving_status(root: Path, records: list[tuple[str, RunRecord]]) -> list[tuple[str, RunRecord]]:
  """The records with a paused run's status saying where it stopped: "stopped at rung k
  (epoch e)" under a halving sweep's root, else "paused at epoch e"."""
  epochs = halving.rung_epochs(root)
  return [(n, dataclasses.replace(r, status=halving.status(r, epochs)) if r.status == "paused"
           else r) for n, r in records]


def diff(a: str | Path, b: str | Path) -> dict[str, Any]:
  """Config fields that differ, and every metric of both runs with its delta (b - a)."""
  ra, rb = read_run(Path(a)), read_run(Path(b))
  pa, pb = runs_params([ra, rb])
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
  rows = []
  for m, (va, vb, delta) in result["metrics"].items():
    d = "" if delta is None else f"{delta:+.4f}" if abs(delta) < 10 else f"{delta:+,.0f}"
    rows.append([m, _fmt(va), _fmt(vb), d])
  lines += ["", textwrap.indent(format_table(["metric", "A", "B", "B - A"], rows, (1, 2, 3)), "  ")]
  return "\n".join(lines)
