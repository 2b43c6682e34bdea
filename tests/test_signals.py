"""The stop-signal handlers of a run, on this (main) thread with real signals."""
import os
import signal

import pytest

from cnnjax import signals


def _send(sig):
  os.kill(os.getpid(), sig)  # Python runs the handler before the next line.


def test_the_first_signal_asks_to_stop_repeats_of_sigusr_change_nothing_and_handlers_come_back(capfd):
  before = {sig: signal.getsignal(sig) for sig in signals.STOP}
  with signals.stop_signals() as stop:
    assert stop.received is None
    _send(signal.SIGUSR2)
    _send(signal.SIGUSR1)
    _send(signal.SIGUSR2)
    assert stop.received == "SIGUSR2"
    _send(signal.SIGINT)  # The first SIGINT/SIGTERM: SIGUSR1/2 never count as it.
    with pytest.raises(KeyboardInterrupt):  # The second: Python's own handler.
      _send(signal.SIGINT)
    assert stop.received == "SIGUSR2"
  assert {sig: signal.getsignal(sig) for sig in signals.STOP} == before
  assert capfd.readouterr().err.splitlines() == [
      "cnnjax: SIGUSR2: stopping after this step with a checkpoint",
      "cnnjax: SIGUSR1: already stopping (SIGUSR2)",
      "cnnjax: SIGUSR2: already stopping (SIGUSR2)",
      "cnnjax: SIGINT: stopping after this step with a checkpoint (send it again to stop at once)"]


def test_a_second_sigterm_takes_the_handler_for_stopping_at_once(capfd):
  stopped_at_once = []
  stop = signals.StopSignals()
  stop.install(at_once=lambda *_: stopped_at_once.append(True))
  try:
    _send(signal.SIGTERM)
    assert stop.received == "SIGTERM" and not stopped_at_once
    _send(signal.SIGUSR2)  # Still handled: never the default action, which kills.
    _send(signal.SIGTERM)
    assert stopped_at_once == [True]
  finally:
    stop.uninstall()
  assert capfd.readouterr().err.splitlines() == [
      "cnnjax: SIGTERM: stopping after this step with a checkpoint (send it again to stop at once)",
      "cnnjax: SIGUSR2: already stopping (SIGTERM)"]


def test_a_relayed_sigusr2_handled_before_the_groups_sigterm_is_one_request(capfd):
  """A sweep relays its group's SIGTERM as SIGUSR2; with both pending, Python runs the
  SIGUSR2 handler first (signal 12 before 15). The SIGTERM must still ask for a stop
  with a checkpoint, not be lost or stop the run at once."""
  stopped_at_once = []
  stop = signals.StopSignals()
  stop.install(at_once=lambda *_: stopped_at_once.append(True))
  try:
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2, signal.SIGTERM])
    _send(signal.SIGTERM)
    _send(signal.SIGUSR2)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # Both arrive at once.
    assert stop.received == "SIGUSR2" and not stopped_at_once
    _send(signal.SIGTERM)  # The group's second SIGTERM.
    assert stopped_at_once == [True]
  finally:
    stop.uninstall()
  assert capfd.readouterr().err.splitlines() == [
      "cnnjax: SIGUSR2: stopping after this step with a checkpoint",
      "cnnjax: SIGTERM: stopping after this step with a checkpoint (send it again to stop at once)"]
