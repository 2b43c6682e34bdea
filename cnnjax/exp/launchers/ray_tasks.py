"""One Ray task per point, each asking for its CPUs and GPUs. `ray.init()` joins the
cluster in RAY_ADDRESS when that is set, else starts an embedded local one, and runs
before the sweep loads its experiment (which imports JAX). The run directories must be on
storage every node shares."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from cnnjax.exp import point
from cnnjax.exp.launchers import gpu_memory_env


def connect() -> bool:
  """Joins RAY_ADDRESS's cluster or starts a local one, unless connected; True if this
  call connected. Call it before anything imports JAX (JAX's threads and fork do not mix)."""
  import ray
  if ray.is_initialized():
    return False
  if "jax" in sys.modules:
    raise RuntimeError("connect to Ray before importing JAX (cnnjax.exp.launchers.ray_tasks.connect)")
  ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False, configure_logging=False)
  return True


class RayLauncher:
  def __init__(self, cpu: float = 1, gpu: float = 0, max_parallel: int | None = None):
    import ray
    self._ray = ray
    self._started = connect()
    self._task = ray.remote(num_cpus=cpu, num_gpus=gpu, max_retries=0)(point.run_point)
    self._env = gpu_memory_env(gpu)
    self._max_parallel = max_parallel
    self._waiting: list[Path] = []
    self._refs: dict = {}
    self._ended: dict[Path, str | None] = {}

  def start(self, workdirs: list[Path]) -> None:
    """Runs these points (a sweep's, or a halving rung's: each start forgets the last)."""
    self._waiting, self._ended = list(workdirs), {}
    self._submit()

  def _submit(self) -> None:
    while self._waiting and (self._max_parallel is None or len(self._refs) < self._max_parallel):
      workdir = self._waiting.pop(0)
      self._refs[self._task.remote(str(workdir), self._env)] = workdir

  def ended(self) -> dict[Path, str | None]:
    if self._refs:
      ready, _ = self._ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
      for ref in ready:
        workdir = self._refs.pop(ref)
        try:
          self._ray.get(ref)
          self._ended[workdir] = None
        except Exception as e:  # The task itself failed (its node died, ...).
          self._ended[workdir] = f"ray: {str(e).splitlines()[0]}"
      self._submit()
    return dict(self._ended)

  def close(self) -> None:
    for ref in self._refs:
      self._ray.cancel(ref, force=True)
    if self._started:
      self._ray.shutdown()
