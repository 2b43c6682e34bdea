"""`cnnjax sweep`: every point of an ablation in its own run directory.

An experiment file (see experiments/) defines the base config, as `BASE = "configs/x.py"`
or `get_config()`, and the points, as `get_points()` returning override dicts (built
with `cnnjax.exp.hyper` or any Python). Each point trains as one `cnnjax train` process
(its config saved as `<point>/point_config.json`), so one failing point never stops the
others; `workers` processes run at once, each pinned to its share of the CPUs (and of
the GPUs, where there are any) through CNNJAX_CPUS and CUDA_VISIBLE_DEVICES.
"""
from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import queue
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from cnnjax import config as config_lib
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


def load_experiment(path: str | Path):
  """(base config, points) of an experiment file."""
  path = Path(path)
  spec = importlib.util.spec_from_file_location(f"_cnnjax_experiment_{path.stem}", path)
  if spec is None or not path.is_file():
    raise FileNotFoundError(f"no experiment file {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if hasattr(module, "get_config"):
    base = module.get_config()
  else:
    candidates = [path.parent / module.BASE, path.parent.parent / module.BASE, Path(module.BASE)]
    base = config_lib.load(str(next((c for c in candidates if c.is_file()), candidates[-1])))
  points = module.get_points() if hasattr(module, "get_points") else module.POINTS
  return base, [dict(p) for p in points]


def point_config(base, point: dict[str, Any], overrides: dict[str, Any] | None = None):
  config = config_lib.with_overrides(base, {**(overrides or {}), **point})
  config_lib.validate(config)
  return config


def _slots(workers: int) -> "queue.Queue[dict[str, str]]":
  """Per-worker environments: a share of the CPUs (and GPUs) each."""
  cpus = sorted(os.sched_getaffinity(0))
  gpus = []
  if shutil.which("nvidia-smi"):
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    gpus = [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU")]
  slots = queue.Queue()
  for i in range(workers):
    slot = {"cpus": ",".join(map(str, cpus[i::workers] if workers <= len(cpus) else cpus))}
    if gpus:
      slot["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[i::workers] if workers <= len(gpus) else gpus)
    slots.put(slot)
  return slots


def _train_point(config, workdir: Path, slot: dict[str, str]) -> tuple[int, str]:
  """Trains with `cnnjax train` in a child process pinned to `slot`; returns (exit code,
  last error line)."""
  from cnnjax import saved_config
  workdir.mkdir(parents=True, exist_ok=True)
  point = workdir / "point_config.json"
  records.write_json(point, config_lib.to_dict(config))
  env = dict(os.environ, CNNJAX_CPUS=slot["cpus"])
  env.update({k: v for k, v in slot.items() if k != "cpus"})
  with open(workdir / "train.log", "a") as log:  # No preexec_fn: forking JAX threads is unsafe.
    child = subprocess.run(
        [sys.executable, "-m", "cnnjax", "train", "--config", saved_config.spec(point),
         "--workdir", str(workdir), "--debug"], stdout=log, stderr=subprocess.STDOUT, env=env)
  lines = [l for l in (workdir / "train.log").read_text().splitlines() if l.strip()]
  return child.returncode, (lines[-1] if lines else "")


def _record_failure(workdir: Path, error: str) -> None:
  """Marks a point failed when its process died before writing a final status."""
  record = read_run(workdir)
  if record.summary.get("status") in (None, "running"):
    records.write_json(workdir / "summary.json", {**record.summary, "status": "failed",
                                                   "error": error, "ended": records.now()})


def run_sweep(base, points: Sequence[dict[str, Any]], root: str | Path, workers: int = 1,
              retry_failed: bool = False, overrides: dict[str, Any] | None = None,
              log=print) -> Table:
  """Trains every point (skipping finished ones) and returns the sweep's table."""
  root = Path(root)
  named = [(point_name(p), point_config(base, p, overrides)) for p in points]
  names = [n for n, _ in named]
  if len(set(names)) < len(names):
    raise ValueError(f"two points share a run name: {sorted(n for n in names if names.count(n) > 1)}")
  todo = []
  for name, config in named:
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
    todo.append((name, config))

  slots = _slots(workers)

  def run(item):
    name, config = item
    slot = slots.get()
    try:
      log(f"{name}: training (cpus {slot['cpus']})")
      code, last = _train_point(config, root / name, slot)
      if code:
        _record_failure(root / name, last)
      log(f"{name}: {'finished' if code == 0 else f'failed ({last})'}")
    finally:
      slots.put(slot)

  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    list(pool.map(run, todo))
  return build_table([(n, read_run(root / n)) for n in names])

