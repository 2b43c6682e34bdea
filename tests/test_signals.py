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
    with pytest.raises(KeyboardInterrupt):  # SIGINT after a first signal: Python's own handler.
      _send(signal.SIGINT)
  assert {sig: signal.getsignal(sig) for sig in signals.STOP} == before
  assert capfd.readouterr().err.splitlines() == [
      "cnnjax: SIGUSR2: stopping after this step with a checkpoint",
      "cnnjax: SIGUSR1: already stopping (SIGUSR2)",
      "cnnjax: SIGUSR2: already stopping (SIGUSR2)"]


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
