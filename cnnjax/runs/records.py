"""A run directory's records: config.json, run.json, summary.json, and its lock.

Files are replaced atomically (`files.atomic_write`), so a reader never sees half of one.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import json
import os
import platform
import socket
import struct
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnjax.errors import WorkdirError
from cnnjax.files import atomic_write, read_json

# In a sweep point's directory: the config fields its sweep varies (TensorBoard's HParams).
HPARAMS_FIELDS = "hparams_fields.json"

# Fields a run may change when it resumes: they do not change what it computes
# (pause_at_epoch only says where a session stops). The devices among them (how many, how
# the steps map over them, how many processes) give the same run within float rounding,
# as the global batch fixes every update: an elastic resume. A different batch does not.
RESUMABLE_CHANGES = ("log_every_seconds", "checkpoint.keep", "data.dir", "data.download",
                     "dvclive", "distributed.coordinator_address", "distributed.process_id",
                     "cpu_devices", "num_devices", "parallel", "keep_freed_memory",
                     "distributed.num_processes", "distributed.auto", "pause_at_epoch")
PACKAGES = ("cnnjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "clu",
            "ml-collections", "numpy", "tensorflow-datasets")


def now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, value: Any) -> None:
  """Atomically replaces `path` with `value` as indented JSON."""
  with atomic_write(path, fsync=True) as f:
    json.dump(value, f, indent=2, sort_keys=True, default=str)
    f.write("\n")


def _git(folder: Path, *args: str, ok=(0,)) -> str:
  result = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          timeout=30)
  if result.returncode not in ok:
    raise subprocess.CalledProcessError(result.returncode, args, result.stderr)
  return result.stdout


def code_state(folder: Path, max_untracked_bytes: int = 1 << 20) -> tuple[dict[str, Any], str]:
  """(git record, diff text) of the repository holding `folder`: its commit, whether the
  tree had changes, and those changes as one patch (tracked changes against HEAD, then
  untracked files up to `max_untracked_bytes` each), so the exact code can be rebuilt."""
  try:
    top = Path(_git(folder, "rev-parse", "--show-toplevel").strip())
    commit = _git(top, "rev-parse", "HEAD").strip()
    diff = _git(top, "diff", "HEAD", "--binary")
    for name in _git(top, "ls-files", "--others", "--exclude-standard", "-z").split("\0"):
      if name and (top / name).is_file() and (top / name).stat().st_size <= max_untracked_bytes:
        diff += _git(top, "diff", "--no-index", "--binary", "/dev/null", name, ok=(0, 1))
  except (OSError, subprocess.SubprocessError):
    return {"commit": None, "dirty": None}, ""
  record = {"commit": commit, "dirty": bool(diff)}
  if diff:
    record["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
  return record, diff


def save_code_diff(workdir: Path, git: dict[str, Any], diff: str) -> None:
  """Saves the uncommitted changes as code/<sha256 prefix>.diff (once per distinct diff)."""
  if diff:
    path = workdir / "code" / f"{git['diff_sha256'][:16]}.diff"
    git["diff_file"] = str(path.relative_to(workdir))
    if not path.exists():
      with atomic_write(path) as f:
        f.write(diff)


def versions() -> dict[str, str | None]:
  out = {"python": platform.python_version()}
  for name in PACKAGES:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  return out


def session_record(seed: int, devices) -> tuple[dict[str, Any], str]:
  """(the record of this process's session, its uncommitted code diff)."""
  import cnnjax
  git, diff = code_state(Path(cnnjax.__file__).parent)
  return {
      "argv": sys.argv, "cwd": os.getcwd(), "start_time": now(),
      "host": socket.gethostname(), "pid": os.getpid(), "seed": seed,
      "git": git, "versions": versions(),
      "devices": [str(d) for d in devices], "platform": devices[0].platform,
      "cpu": cpu_model(),
  }, diff


def cpu_model() -> str:
  """The processor's name (lscpu's "Model name"): speeds are comparable on one only."""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


class Lock:
  """An exclusive lock on a run directory, released by the OS when the holder dies; the
  one user of .lock, for training (`acquire`) and for readers of runs (`is_held`).

  Where the OS has open file description locks (Linux), a reader tests the lock without
  taking one (F_OFD_GETLK), so that reading a run never stands in the way of a training
  process that is taking its lock at that moment; elsewhere it is flock, tested with a
  shared lock held for an instant.
  """

  def __init__(self, workdir: Path):
    self.path = workdir / ".lock"
    self._file = None

  def acquire(self) -> None:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    f = open(self.path, "a+")
    try:
      _lock(f)
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
      _unlock(self._file)
      self._file.close()
      self._file = None

  def is_held(self) -> bool:
    """Whether a live process holds the lock: a run whose summary says "running" while
    none does was killed. Creates nothing, so readers can ask of any directory."""
    try:
      f = open(self.path)
    except FileNotFoundError:
      return False
    with f:
      if _OFD:
        return _ofd(f, fcntl.F_OFD_GETLK, fcntl.F_WRLCK) != fcntl.F_UNLCK
      try:
        fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
      except BlockingIOError:
        return True
      fcntl.flock(f, fcntl.LOCK_UN)
    return False


# struct flock of 64-bit Linux: l_type, l_whence, (padding), l_start, l_len, l_pid, (padding).
_FLOCK = struct.Struct("hh4xqqi4x")
_OFD = hasattr(fcntl, "F_OFD_GETLK") and struct.calcsize("P") == 8


def _ofd(f, command: int, kind: int) -> int:
  """An open file description lock call on the whole of `f`; the l_type it returns."""
  out = fcntl.fcntl(f, command, _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0))
  return _FLOCK.unpack(out)[0]


def _lock(f) -> None:
  """Takes the exclusive lock without waiting; BlockingIOError when another holds it."""
  if not _OFD:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return
  try:
    _ofd(f, fcntl.F_OFD_SETLK, fcntl.F_WRLCK)
  except OSError as e:
    if e.errno in (errno.EAGAIN, errno.EACCES):
      raise BlockingIOError(e.errno, e.strerror) from None
    raise


def _unlock(f) -> None:
  if _OFD:
    _ofd(f, fcntl.F_OFD_SETLK, fcntl.F_UNLCK)
  else:
    fcntl.flock(f, fcntl.LOCK_UN)


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """'field: old -> new' for each flattened field that differs. A field `old` lacks
  (added to cnnjax since the run started) counts as its default."""
  from cnnjax import config as config_lib
  from cnnjax.errors import ConfigError
  a, b = config_lib.flatten(old), config_lib.flatten(new)
  try:
    a = {**config_lib.flatten(config_lib.to_dict(config_lib.from_dict(old))), **a}
  except ConfigError:  # A field cnnjax no longer has: reported as a change below.
    pass
  return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
          if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES]


def write_run_records(workdir: Path, config_dict: dict[str, Any], session: dict[str, Any],
                      diff: str = "") -> bool:
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
  save_code_diff(workdir, session["git"], diff)
  run = read_json(workdir / "run.json")
  if run is None:
    run = dict(session, resumes=[])
  else:
    run["resumes"].append(session)
  write_json(workdir / "run.json", run)
  return old is not None
