"""`cnnjax sweep`: every point of an ablation in its own run directory.

An experiment file (see experiments/) defines the base config, as `BASE = "configs/x.py"`
or `get_config()`, the points, as `get_points()` returning override dicts (built with
`cnnjax.exp.hyper` or any Python), optionally how each point is launched, as `LAUNCH =
{"cpu": 2, "gpu": 1, "partition": ..., "time": minutes, "max_parallel": 8}` (flags win),
and optionally `HALVING = hyper.halving(...)`: successive halving (cnnjax.exp.halving).
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
from cnnjax.exp import halving as halving_lib
from cnnjax.exp import launchers, point
from cnnjax.exp.table import Table, sweep_table
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


def candidates(points: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
  """{candidate: the run names of its points}: points that differ only in `seed` are one
  candidate of successive halving, named without the seed."""
  out: dict[str, list[str]] = {}
  for p in points:
    out.setdefault(point_name({k: v for k, v in p.items() if k != "seed"}), []).append(point_name(p))
  return out


@dataclasses.dataclass
class Experiment:
  base: Any  # ml_collections.ConfigDict
  points: list[dict[str, Any]]
  launch: dict[str, Any]  # LAUNCH in the file: cpu, gpu, partition, time, max_parallel.
  halving: halving_lib.Halving | None = None  # HALVING in the file.


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
  return Experiment(base, [dict(p) for p in points], dict(getattr(module, "LAUNCH", {})),
                    getattr(module, "HALVING", None))


def point_config(base, point: dict[str, Any], overrides: dict[str, Any] | None = None):
  config = config_lib.with_overrides(base, {**(overrides or {}), **point})
  config_lib.validate(config)
  if config.dvclive:
    raise ConfigError("dvclive", "the points of a sweep would all log to this one DVCLive "
                      "folder: leave it '' (`cnnjax exp show` tables a sweep's runs)")
  return config


def _plan(names, root: Path, retry_failed: bool, log, epoch: int | None = None) -> list[str]:
  """The points to train: not the finished ones (nor, for a halving rung ending at
  `epoch`, those paused there or later), nor those another process is training, nor
  (unless retry_failed) the failed ones, whose attempt is then moved aside."""
  todo = []
  for name in names:
    workdir = root / name
    record = read_run(workdir)
    if (workdir / "config.json").exists() and record.status == "finished":
      log(f"{name}: finished, skipped")
      continue
    if epoch and record.status == "paused" and record.summary.get("epochs", 0) >= epoch:
      log(f"{name}: paused at epoch {record.summary['epochs']}, skipped")
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
  if state == "paused":
    return f"{name}: paused at epoch {read_run(workdir).summary.get('paused_at_epoch')}"
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
      elif state in ("interrupted", "paused"):
        state = "queued"  # Resuming: not restarted yet (or requeued by SLURM).
      if shown.get(name) != state:
        if state in ("finished", "paused", "failed") and shown.get(name) in (None, "queued") \
            and (workdir / point.LOG_FILE).exists():
          log(_describe(name, "running", workdir))  # It ran between two looks.
        shown[name] = state
        log(_describe(name, state, workdir))
    if pending:
      time.sleep(poll_seconds)


def run_sweep(base, points: Sequence[dict[str, Any]], root: str | Path, launcher=None,
              retry_failed: bool = False, overrides: dict[str, Any] | None = None,
              log=print, poll_seconds: float = 0.5,
              halving: halving_lib.Halving | None = None) -> Table:
  """Trains every point (skipping finished ones) with `launcher` (default: one local
  process at a time), or with `halving` only the points each rung promotes, and returns
  the sweep's table."""
  root = Path(root)
  named = {point_name(p): point_config(base, p, overrides) for p in points}
  names = [point_name(p) for p in points]
  if len(named) < len(names):
    raise UsageError(f"two points share a run name: {sorted(n for n in names if names.count(n) > 1)}")
  groups = candidates(points)
  num_epochs = halving_lib.check(halving, list(named.values()), groups) if halving else None
  varied = sorted({field for p in points for field in p})  # For TensorBoard's HParams.

  def train(configs: dict[str, Any], epoch: int | None = None) -> None:
    todo = _plan(configs, root, retry_failed, log, epoch)
    workdirs = {name: root / name for name in todo}
    for name in todo:
      point.write(configs[name], workdirs[name], varied)
    launcher.start(list(workdirs.values()))
    _watch(launcher, workdirs, log, poll_seconds)

  if launcher is None:
    from cnnjax.exp.launchers.local import LocalLauncher
    launcher = LocalLauncher(1)
  try:
    if halving:
      _halve(halving, named, groups, num_epochs, root, train, log)
    else:
      train(named)
  finally:
    launcher.close()
  return sweep_table(root, names)


def _halve(halving: halving_lib.Halving, configs: dict[str, Any], groups: dict[str, list[str]],
           num_epochs: int, root: Path, train, log) -> None:
  """The rungs of successive halving: each trains its candidates' points to the rung's
  epoch (`train`), then keeps the best by the decision stored in ROOT/halving.json, or
  makes and stores it."""
  decisions = halving_lib.Decisions(root, halving, num_epochs, groups)
  plan = halving_lib.rungs(halving, len(groups), num_epochs)
  alive = list(groups)
  for k, (epoch, _) in enumerate(plan):
    names = [name for c in alive for name in groups[c]]
    log(f"rung {k}: {len(alive)} point{'s' * (len(alive) != 1)} to epoch {epoch}")
    train(halving_lib.point_configs({n: configs[n] for n in names}, epoch, num_epochs), epoch)
    found = {n: read_run(root / n) for n in names}
    waiting = [n for n, r in found.items() if r.status not in ("finished", "paused", "failed")]
    if waiting:
      log(f"rung {k}: not decided, {', '.join(waiting)} did not get to epoch {epoch}; run the "
          f"same sweep again to go on")
      return
    stored = decisions.get(k)  # Decisions checked that it is of this setup: same epochs.
    if stored is not None:
      values, chosen = stored["values"], stored.get("promoted") or stored["delivered"]
    else:
      values = {c: halving_lib.mean_value([found[n] for n in groups[c]], epoch, halving.metric)
                for c in alive}
      chosen = halving_lib.decide(halving, values, plan[k + 1][1] if k + 1 < len(plan) else 1)
      decisions.record(k, epoch, values, chosen)
    what = "delivers" if k + 1 == len(plan) else "promotes"
    log(f"rung {k} {what} " + ", ".join(f"{c} ({halving.metric} {_figure(values[c])})"
                                        for c in chosen))
    alive = chosen


def _figure(value) -> str:
  return "none" if value is None else f"{value:.4g}"


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
  halving = None if getattr(args, "no_halving", False) else experiment.halving
  root = Path(args.root or f"runs/{Path(args.experiment).stem}")
  if args.dry_run:
    return _dry_run(experiment, points, root, halving, overrides, getattr(args, "plan", False))
  launcher = launchers.make(args.launcher, root, _launch_options(args, experiment.launch))
  try:
    result = run_sweep(experiment.base, points, root, launcher, retry_failed=args.retry_failed,
                       overrides=overrides, halving=halving)
  except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (cnnjax.runtime.start_command).
    print("cnnjax sweep: stopped; points in progress saved a checkpoint and resume when the "
          "same sweep runs again", file=sys.stderr)
    return 130
  print("\n" + result.to_text())
  if args.seeds:
    from cnnjax.exp import table
    print("\n" + table.show([root], aggregate="seed").to_text())
  # Every point finished, or stopped by a halving that delivered its last rung.
  ended = all(r["status"] == "finished" or (halving and r["paused_at_epoch"]) for r in result.rows)
  return 0 if ended and (not halving or halving_lib.delivered(root)) else 1


def _dry_run(experiment: Experiment, points, root: Path, halving, overrides, plan: bool) -> int:
  """`--dry-run`: each point's directory and overrides (with `plan`, its memory and
  speed); with halving, its rungs and the epochs they cost."""
  configs = []
  for p in points:
    configs.append(config := point_config(experiment.base, p, overrides))  # Bad fields fail here.
    print(f"{root}/{point_name(p)}  {json.dumps(p, default=str)}", flush=True)
    if plan:
      from cnnjax.train import plan as plan_lib
      print("  " + plan_lib.one_line(plan_lib.plan(config)), flush=True)
  if halving:
    groups = candidates(points)
    num_epochs = halving_lib.check(halving, configs, groups)
    seeds = len(points) // len(groups)
    rungs = halving_lib.rungs(halving, len(groups), num_epochs)
    print("\n".join(halving_lib.dry_run_lines(halving, rungs, seeds, num_epochs)), flush=True)
  return 0


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
