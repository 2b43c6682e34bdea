"""Named points where a test or a soak script can freeze a run to kill it right there.

With CNNJAX_PAUSE_AT=name:n, the n-th arrival at `pause_point(name)` prints
"cnnjax: paused at name:n" to stderr and waits there, so the caller can send a real signal
(e.g. kill -9) while the run is inside that phase. SIGCONT lets the run go on (signals that
arrive during the pause are handled as they come, as anywhere else in the run). Unset, a
pause point costs nothing.
"""
import os
import signal
import sys
import time

_arrivals: dict[str, int] = {}


def pause_point(name: str) -> None:
  spec = os.environ.get("CNNJAX_PAUSE_AT")
  if not spec:
    return
  target, _, count = spec.partition(":")
  if target != name:
    return
  _arrivals[name] = _arrivals.get(name, 0) + 1
  if _arrivals[name] != int(count or 1):
    return
  released = []
  previous = signal.signal(signal.SIGCONT, lambda *_: released.append(True))
  try:
    print(f"cnnjax: paused at {spec}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 3600
    while not released and time.monotonic() < deadline:
      time.sleep(0.05)
  finally:
    signal.signal(signal.SIGCONT, previous)
