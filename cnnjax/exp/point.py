"""One sweep point: one `cnnjax train` process on a saved config, wherever a launcher runs it.

The driver writes `<point>/point_config.json`; a launcher (a local thread, a Ray task, a
SLURM array task) runs `PointProcess(workdir).run()`, which appends the process's output
to `<point>/train.log`. A point's state is read from its run directory, the same way for
every launcher. Nothing here imports JAX: Ray workers and SLURM job wrappers stay light.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cnnjax import config as config_lib
from cnnjax.errors import EXIT_INTERRUPTED
from cnnjax.runs import records
from cnnjax.runs.reader import read_run
from cnnjax.signals import STOP

CONFIG_FILE = "point_config.json"
LOG_FILE = "train.log"
STOP_SIGNAL = signal.SIGUSR2  # `cnnjax train` checkpoints and stops; repeats change nothing.


def write(config, workdir: Path, varied=()) -> None:
  """Saves the point's config where its process will read it, and the fields the sweep
  varies, which the run gives TensorBoard's HParams dashboard."""
  workdir.mkdir(parents=True, exist_ok=True)
  records.write_json(workdir / CONFIG_FILE, config_lib.to_dict(config))
  if varied:
    records.write_json(workdir / records.HPARAMS_FIELDS, list(varied))


def state(workdir: Path) -> str:
  """queued (not started), running, finished, failed or interrupted, from the run directory."""
  if not (Path(workdir) / "summary.json").exists():
    return "queued"
  return read_run(workdir).status


def last_log_line(workdir: Path) -> str:
  try:
    lines = [l for l in (Path(workdir) / LOG_FILE).read_text().splitlines() if l.strip()]
  except OSError:
    return ""
  return lines[-1] if lines else ""


def record_end(workdir: Path, status: str, error: str) -> None:
  """Writes the final status a point's process died without writing (failed or
  interrupted); a status it wrote itself stays."""
  record = read_run(workdir)
  if record.summary.get("status") in (None, "running"):
    records.write_json(workdir / "summary.json", {**record.summary, "status": status,
                                                   "error": error, "ended": records.now()})


def record_exit(workdir: Path, code: int) -> None:
  """What a point's process could not record itself. Ended by a stop signal (a second
  SIGINT/SIGTERM stops at once; any of them before its handlers were set kills it), it is
  interrupted and resumes from its latest checkpoint; any other end without a final
  status is a failure, with the last line it wrote."""
  if code in (0, EXIT_INTERRUPTED):
    return
  if -code in STOP:
    record_end(workdir, "interrupted", f"stopped at once by {signal.Signals(-code).name}; "
               f"the next run resumes from its latest checkpoint")
    return
  last = last_log_line(workdir)
  if code > 0:
    record_end(workdir, "failed", last or f"exit code {code}")
  else:
    record_end(workdir, "failed", f"killed by {signal.Signals(-code).name}"
               + (f"; its log ends: {last}" if last else ""))


class PointProcess:
  """`cnnjax train --config <point_config.json> --workdir <point>` as a child process."""

  def __init__(self, workdir: str | Path, env: dict[str, str] | None = None):
    self.workdir = Path(workdir)
    self.env = dict(env or {})
    self.child: subprocess.Popen | None = None

  def command(self) -> list[str]:
    from cnnjax import saved_config
    return [sys.executable, "-m", "cnnjax", "train", "--config",
            saved_config.spec(self.workdir / CONFIG_FILE), "--workdir", str(self.workdir),
            "--debug"]

  def run(self) -> int:
    """Trains to the end; returns the exit code. A failure the process could not record
    itself (it was killed, or crashed) is written to the run's summary."""
    with open(self.workdir / LOG_FILE, "a") as log:  # No preexec_fn: forking JAX threads is unsafe.
      self.child = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **self.env})
      try:
        code = self.wait()
      except BaseException:  # The launcher is stopping (Ctrl-C, a cancelled Ray task).
        self.stop()
        raise
    record_exit(self.workdir, code)
    return code

  def wait(self, timeout: float | None = None) -> int | None:
    """Polls rather than blocking in waitpid, so that a signal handler (submitit's) can
    wait for the same child."""
    end = None if timeout is None else time.monotonic() + timeout
    while (code := self.child.poll()) is None and (end is None or time.monotonic() < end):
      time.sleep(0.2)
    return code

  def request_stop(self) -> None:
    """Asks a running process to checkpoint and stop (SIGUSR2, as SLURM sends before a
    time limit); returns at once."""
    self._send(STOP_SIGNAL)

  def stop_now(self) -> None:
    """Asks a running process to stop at once (SIGTERM: after a first stop signal, it
    ends without finishing its step; the run resumes from its latest checkpoint)."""
    self._send(signal.SIGTERM)

  def _send(self, sig: int) -> None:
    if self.child is not None and self.child.poll() is None:
      self.child.send_signal(sig)

  def stop(self, timeout: float = 120.0) -> int | None:
    """`request_stop`, then waits for the process."""
    self.request_stop()
    return self.wait(timeout) if self.child is not None else None


def run_point(workdir: str, env: dict[str, str] | None = None) -> int:
  """What a Ray task or a thread runs for one point."""
  return PointProcess(workdir, env).run()
