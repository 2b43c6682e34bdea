"""`cnnjax sweep`: every point of an ablation in its own run directory.

An experiment file (see experiments/) defines the base config, as `BASE = "configs/x.py"`
or `get_config()`, the points, as `get_points()` returning override dicts (built with
`cnnjax.exp.hyper` or any Python), and optionally how each point is launched, as `LAUNCH =
{"cpu": 2, "gpu": 1, "partition": ..., "time": minutes, "max_parallel": 8}` (flags win).
Each point trains as one `cnnjax train` process (its config saved as
`<point>/point_config.json`), so one failing point never stops the others, and a launcher
(`cnnjax.exp.launchers`: local, ray, slurm) only places and runs those processes.
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from cnnjax import config as config_lib
from cnnjax.errors import ConfigError, UsageError
from cnnjax.exp import launchers, point
from cnnjax.exp.table import Table, build_table
from cnnjax.runs import records
from cnnjax.runs.reader import read_run


def point_name(point: dict[str, Any]) -> str:
  """A readable, stable directory name from a point's overrides."""
  if not point:
    return "base"
  leaves = [k.split(".")[-1] for k in point]
  parts = []
  for (field, value), leaf in zip(point.items(), leaves):
    key = leaf if leaves.count(leaf) == 1 else field
    text = "-".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    parts.append(f"{key}={text}")
  return re.sub(r"[^\w.=,+-]", "-", ",".join(parts))


@dataclasses.dataclass
class Experiment:
  base: Any  # ml_collections.ConfigDict
  points: list[dict[str, Any]]
  launch: dict[str, Any]  # LAUNCH in the file: cpu, gpu, partition, time, max_parallel.


def load_experiment(path: str | Path) -> Experiment:
  """The base config, the points and the launch options of an experiment file."""
  path = Path(path)
  if not path.is_file():
    raise UsageError(f"no experiment file {path}")
  module = config_lib.load_module(path, f"_cnnjax_experiment_{path.stem}")
  if hasattr(module, "get_config"):
    base = module.get_config()
  else:
    candidates = [path.parent / module.BASE, path.parent.parent / module.BASE, Path(module.BASE)]
    base = config_lib.load(str(next((c for c in candidates if c.is_file()), candidates[-1])))
  points = module.get_points() if hasattr(module, "get_points") else module.POINTS
  return Experiment(base, [dict(p) for p in points], dict(getattr(module, "LAUNCH", {})))


def point_config(base, point: dict[str, Any], overrides: dict[str, Any] | None = None):
  config = config_lib.with_overrides(base, {**(overrides or {}), **point})
  config_lib.validate(config)
  if config.dvclive:
    raise ConfigError("dvclive", "the points of a sweep would all log to this one DVCLive "
                      "folder: leave it '' (`cnnjax exp show` tables a sweep's runs)")
  return config


def _plan(named, root: Path, retry_failed: bool, log) -> list[str]:
  """The points to train: not the finished ones, nor those another process is training,
  nor (unless retry_failed) the failed ones, whose attempt is then moved aside."""
  todo = []
  for name, _ in named:
    workdir = root / name
    record = read_run(workdir)
    if (workdir / "config.json").exists() and record.status == "finished":
      log(f"{name}: finished, skipped")
      continue
    if record.status == "running":
      log(f"{name}: running in another process, skipped")
      continue
    if record.summary.get("status") == "failed":
      if not retry_failed:
        log(f"{name}: failed before, skipped (--retry-failed trains it again): {record.error}")
        continue
      attempt = root / ".failed" / f"{name}.{records.now().replace(':', '')}"
      attempt.parent.mkdir(parents=True, exist_ok=True)
      workdir.rename(attempt)  # The failed attempt is kept, out of the table's way.
      log(f"{name}: retrying; the failed attempt is in {attempt}")
    todo.append(name)
  return todo


def _describe(name: str, state: str, workdir: Path) -> str:
  log_file = workdir / point.LOG_FILE
  if state == "running":
    return f"{name}: running, log {log_file}"
  if state in ("failed", "interrupted"):
    return f"{name}: {state} ({read_run(workdir).error}), log {log_file}"
  return f"{name}: {state}"


def _watch(launcher, workdirs: dict[str, Path], log, poll_seconds: float) -> None:
  """One line per point each time its state changes, until every point's process ended."""
  shown: dict[str, str] = {}
  pending = dict(workdirs)
  while pending:
    ended = launcher.ended()
    for name, workdir in list(pending.items()):
      state = point.state(workdir)
      if workdir in ended:
        if state in ("queued", "running"):
          point.record_end(workdir, "failed", ended[workdir] or point.last_log_line(workdir)
                           or "the point's process ended without a final status")
          state = point.state(workdir)
        del pending[name]
      elif state == "interrupted":
        state = "queued"  # Resuming: not restarted yet (or requeued by SLURM).
      if shown.get(name) != state:
        if state in ("finished", "failed") and shown.get(name) in (None, "queued") \
            and (workdir / point.LOG_FILE).exists():
          log(_describe(name, "running", workdir))  # It ran between two looks.
        shown[name] = state
        log(_describe(name, state, workdir))
    if pending:
      time.sleep(poll_seconds)


def run_sweep(base, points: Sequence[dict[str, Any]], root: str | Path, launcher=None,
              retry_failed: bool = False, overrides: dict[str, Any] | None = None,
              log=print, poll_seconds: float = 0.5) -> Table:
  """Trains every point (skipping finished ones) with `launcher` (default: one local
  process at a time) and returns the sweep's table."""
  root = Path(root)
  named = [(point_name(p), point_config(base, p, overrides)) for p in points]
  names = [n for n, _ in named]
  if len(set(names)) < len(names):
    raise UsageError(f"two points share a run name: {sorted(n for n in names if names.count(n) > 1)}")
  todo = set(_plan(named, root, retry_failed, log))
  workdirs = {name: root / name for name, config in named if name in todo}
  varied = sorted({field for p in points for field in p})  # For TensorBoard's HParams.
  for name, config in named:
    if name in todo:
      point.write(config, workdirs[name], varied)
  if launcher is None:
    from cnnjax.exp.launchers.local import LocalLauncher
    launcher = LocalLauncher(1)
  try:
    launcher.start(list(workdirs.values()))
    _watch(launcher, workdirs, log, poll_seconds)
  finally:
    launcher.close()
  return build_table([(n, read_run(root / n)) for n in names])


def command(args, overrides: dict[str, Any]) -> int:
  """`cnnjax sweep` with its parsed flags (cnnjax.cli): 0 when every point finished."""
  if args.launcher == "ray" and not args.dry_run:
    from cnnjax.exp.launchers import ray_tasks
    ray_tasks.connect()  # Before the experiment file imports JAX.
  experiment = load_experiment(args.experiment)
  points = experiment.points
  if args.seeds:
    from cnnjax.exp import hyper
    points = hyper.with_seeds(points, args.seeds)
  root = Path(args.root or f"runs/{Path(args.experiment).stem}")
  if args.dry_run:
    for p in points:
      config = point_config(experiment.base, p, overrides)  # Bad fields fail here.
      print(f"{root}/{point_name(p)}  {json.dumps(p, default=str)}", flush=True)
      if getattr(args, "plan", False):
        from cnnjax.train import plan
        print("  " + plan.one_line(plan.plan(config)), flush=True)
    return 0
  launcher = launchers.make(args.launcher, root, _launch_options(args, experiment.launch))
  try:
    result = run_sweep(experiment.base, points, root, launcher, retry_failed=args.retry_failed,
                       overrides=overrides)
  except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (cnnjax.runtime.start_command).
    print("cnnjax sweep: stopped; points in progress saved a checkpoint and resume when the "
          "same sweep runs again", file=sys.stderr)
    return 130
  print("\n" + result.to_text())
  if args.seeds:
    from cnnjax.exp import table
    print("\n" + table.show([root], aggregate="seed").to_text())
  return 0 if all(r["status"] == "finished" for r in result.rows) else 1


def _launch_options(args, from_file: dict) -> dict:
  """The launcher's options: the experiment's LAUNCH, then the command's flags."""
  options = dict(from_file, workers=args.workers)
  for pair in (args.resources or "").split(","):
    if pair.strip():
      key, sep, value = pair.partition("=")
      if not sep or key.strip() not in ("cpu", "gpu"):
        raise UsageError(f"--resources {args.resources!r}: give cpu=N,gpu=M")
      options[key.strip()] = float(value)
  for key in ("max_parallel", "partition", "time"):
    if getattr(args, key) is not None:
      options[key] = getattr(args, key)
  return options
