"""A run directory's records: config.json, run.json, summary.json, and its lock.

Files are replaced atomically (write a temporary file, then rename), so a reader never
sees half of one.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnjax.errors import WorkdirError

# Fields that may change when a run resumes: they do not change what it computes.
RESUMABLE_CHANGES = ("log_every_seconds", "checkpoint.keep", "data.dir", "data.download")
PACKAGES = ("cnnjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "clu",
            "ml-collections", "numpy", "tensorflow-datasets")


def now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, value: Any) -> None:
  """Atomically replaces `path` with `value` as indented JSON."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                   delete=False) as f:
    json.dump(value, f, indent=2, sort_keys=True, default=str)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(f.name, path)


def read_json(path: Path) -> Any | None:
  """The JSON in `path`, or None when it is absent."""
  try:
    return json.loads(path.read_text())
  except FileNotFoundError:
    return None


def git_state(folder: Path) -> dict[str, Any]:
  """Commit of the repository holding `folder` and whether its tree had changes."""
  def git(*args):
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()
  try:
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
  except (OSError, subprocess.SubprocessError):
    return {"commit": None, "dirty": None}


def versions() -> dict[str, str | None]:
  out = {"python": platform.python_version()}
  for name in PACKAGES:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  return out


def session_record(seed: int, devices) -> dict[str, Any]:
  import cnnjax
  return {
      "argv": sys.argv, "cwd": os.getcwd(), "start_time": now(),
      "host": socket.gethostname(), "pid": os.getpid(), "seed": seed,
      "git": git_state(Path(cnnjax.__file__).parent),
      "versions": versions(),
      "devices": [str(d) for d in devices], "platform": devices[0].platform,
  }


class Lock:
  """An exclusive lock on a run directory, released by the OS when the holder dies."""

  def __init__(self, workdir: Path):
    self.path = workdir / ".lock"
    self._file = None

  def acquire(self) -> None:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    f = open(self.path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      f.close()
      raise WorkdirError(f"{self.path.parent} is in use by {holder}; wait for it to end "
                         f"or choose another --workdir") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()} since {now()}\n")
    f.flush()
    self._file = f

  def release(self) -> None:
    if self._file:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """'field: old -> new' for each flattened field that differs."""
  from cnnjax.config import flatten
  a, b = flatten(old), flatten(new)
  return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
          if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES]


def write_run_records(workdir: Path, config_dict: dict[str, Any], session: dict[str, Any]) -> bool:
  """Writes config.json and run.json; returns True when the workdir already held this run.

  A workdir holding a run of another config is refused, naming the fields that differ.
  """
  old = read_json(workdir / "config.json")
  if old is not None:
    changes = config_changes(old, config_dict)
    if changes:
      raise WorkdirError(f"{workdir} holds a run with another config ({'; '.join(changes)}); "
                         f"use a new --workdir to train this one")
  write_json(workdir / "config.json", config_dict)
  run = read_json(workdir / "run.json")
  if run is None:
    run = dict(session, resumes=[])
  else:
    run["resumes"].append(session)
  write_json(workdir / "run.json", run)
  return old is not None
