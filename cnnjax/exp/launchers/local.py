"""Points as child processes of a thread pool on this machine, each pinned to its share of
the CPUs (and of the GPUs, where there are any) through CNNJAX_CPUS and
CUDA_VISIBLE_DEVICES."""
from __future__ import annotations

import concurrent.futures
import math
import os
import queue
import shutil
import subprocess
from pathlib import Path

from cnnjax.exp import point
from cnnjax.exp.launchers import gpu_memory_env


def slots(workers: int) -> "queue.Queue[dict[str, str]]":
  """Per-worker environments: a share of the CPUs (and GPUs) each."""
  cpus = sorted(os.sched_getaffinity(0))
  gpus = []
  if shutil.which("nvidia-smi"):
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    gpus = [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU")]
  free = queue.Queue()
  for i in range(workers):
    slot = {"CNNJAX_CPUS": ",".join(map(str, cpus[i::workers] if workers <= len(cpus) else cpus))}
    if gpus:
      slot["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[i::workers] if workers <= len(gpus) else gpus)
      slot.update(gpu_memory_env(1 / math.ceil(workers / len(gpus))))
    free.put(slot)
  return free


class LocalLauncher:
  def __init__(self, workers: int = 1):
    self.workers = max(1, workers)
    self._pool = concurrent.futures.ThreadPoolExecutor(self.workers)
    self._slots = slots(self.workers)
    self._futures: dict[Path, concurrent.futures.Future] = {}
    self._processes: dict[Path, point.PointProcess] = {}

  def _run(self, workdir: Path) -> int:
    slot = self._slots.get()
    try:
      self._processes[workdir] = process = point.PointProcess(workdir, slot)
      return process.run()
    finally:
      self._slots.put(slot)

  def start(self, workdirs: list[Path]) -> None:
    self._futures = {w: self._pool.submit(self._run, w) for w in workdirs}

  def ended(self) -> dict[Path, str | None]:
    return {w: None if f.exception() is None else f"launcher: {f.exception()}"
            for w, f in self._futures.items() if f.done()}

  def close(self) -> None:
    """Waits for the points in progress; when the sweep is stopping early, they are first
    asked to checkpoint and stop (the next sweep resumes them), and queued ones dropped.
    A stop signal while it waits (Ctrl-C again) asks them to stop at once; it still waits
    for each process to end, so that how each ended is recorded."""
    for future in self._futures.values():
      future.cancel()
    ask = point.PointProcess.request_stop
    while True:
      for process in list(self._processes.values()):
        ask(process)
      try:
        # Not Thread.join: interrupted by a signal, it leaves Python (3.11) taking the
        # thread for ended, and the interpreter exits without waiting for it.
        concurrent.futures.wait(self._futures.values())
        break
      except KeyboardInterrupt:
        ask = point.PointProcess.stop_now
    self._pool.shutdown(wait=True)
