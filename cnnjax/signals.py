"""Stop signals: SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 asks a run to checkpoint and stop.

The first asks the loop to stop after the current step with a checkpoint. A second
SIGINT or SIGTERM stops at once (the run resumes from its latest checkpoint); SIGUSR1 and
SIGUSR2 (what SLURM sends ahead of a time limit to every process of a job, and what a
sweep sends its points) never count as that first one: a sweep relays a SIGTERM sent to
its whole process group as SIGUSR2, and the point may handle the relay before the
SIGTERM itself (Python runs pending handlers in the order of the signals' numbers), yet
the two are one request to stop. The handlers stay installed throughout and carry out
the stop at once themselves: a handler swapped for the default action while a second
signal was pending would have Python drop that signal ("Signal 15 ignored due to race
condition").

`cnnjax train` installs the handlers as it starts and keeps them until the process exits
(`install_for_process`): a stop signal that found the default action instead (before the
loop, or while the run writes its final status) would kill the process before it could
record how it ended. `train_and_evaluate` called from Python installs them for the run
alone (`stop_signals`) and gives the caller's handlers back afterwards.
"""
from __future__ import annotations

import contextlib
import os
import signal

STOP = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
AT_ONCE = (signal.SIGINT, signal.SIGTERM)  # A second one of these stops at once.


class StopSignals:
  """`received`: the name of the first stop signal, or None."""

  def __init__(self):
    self.received: str | None = None
    self._asked: str | None = None  # The first SIGINT or SIGTERM: the next one stops at once.
    self._at_once: dict[int, object] = {}  # What a second SIGINT/SIGTERM does.
    self._previous: dict[int, object] = {}

  def install(self, at_once=None) -> None:
    """Handles STOP from now on; `at_once` is what a second SIGINT/SIGTERM does (a handler
    or signal.SIG_DFL; default: the handlers found, e.g. Python's KeyboardInterrupt for
    SIGINT)."""
    for sig in STOP:
      self._previous[sig] = signal.signal(sig, self._handle)
    for sig in AT_ONCE:
      self._at_once[sig] = self._previous[sig] if at_once is None else at_once

  def uninstall(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def _handle(self, signum, frame):
    name = signal.Signals(signum).name
    at_once = signum in AT_ONCE
    if at_once and self._asked:
      return self._stop_at_once(signum, frame)
    # os.write: a print could land inside another print of the interrupted code.
    if self.received and not at_once:  # A repeated SIGUSR1/SIGUSR2 changes nothing.
      os.write(2, f"cnnjax: {name}: already stopping ({self.received})\n".encode())
      return
    if at_once:
      self._asked = name
    self.received = self.received or name
    again = " (send it again to stop at once)" if at_once else ""
    os.write(2, f"cnnjax: {name}: stopping after this step with a checkpoint{again}\n".encode())

  def _stop_at_once(self, signum, frame):
    action = self._at_once[signum]
    if callable(action):
      return action(signum, frame)
    if action in (signal.SIG_DFL, None):  # The default action: the process ends by the signal.
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)
    return None  # SIG_IGN


_process: StopSignals | None = None  # Installed by install_for_process.


def install_for_process() -> StopSignals:
  """The handlers of a `cnnjax train` process, for its whole life: a second SIGINT or
  SIGTERM takes the default action (the process ends at once)."""
  global _process
  if _process is None:
    _process = StopSignals()
    _process.install(at_once=signal.SIG_DFL)
  return _process


@contextlib.contextmanager
def stop_signals():
  """The process's handlers where `install_for_process` ran; else handlers for the
  duration of the block (none off the main thread, where Python cannot set them)."""
  if _process is not None:
    yield _process
    return
  stop = StopSignals()
  try:
    stop.install()
  except ValueError:  # Not the main thread: leave signals alone.
    stop.uninstall()
  try:
    yield stop
  finally:
    stop.uninstall()
