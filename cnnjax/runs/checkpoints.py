"""Orbax checkpoints of a run: the latest few in checkpoints/, the best in best/."""
from __future__ import annotations

from pathlib import Path

import orbax.checkpoint as ocp


class Checkpoints:

  def __init__(self, workdir: Path, keep: int):
    options = lambda n: ocp.CheckpointManagerOptions(max_to_keep=n, create=True)
    self._latest = ocp.CheckpointManager(workdir.resolve() / "checkpoints", options=options(keep))
    self._best = ocp.CheckpointManager(workdir.resolve() / "best", options=options(1))

  def latest_step(self) -> int | None:
    return self._latest.latest_step()

  def restore_latest(self, target):
    """The latest checkpoint restored into the structure of `target` (or None)."""
    step = self._latest.latest_step()
    if step is None:
      return None
    return self._latest.restore(step, args=ocp.args.StandardRestore(target))

  def save(self, step: int, state, best: bool) -> None:
    managers = [self._latest, self._best] if best else [self._latest]
    for manager in managers:
      if step in manager.all_steps():  # Left by a session killed after this point.
        manager.delete(step)
      manager.save(step, args=ocp.args.StandardSave(state))

  def close(self) -> None:
    """Waits for asynchronous writes to finish."""
    for manager in (self._latest, self._best):
      manager.wait_until_finished()
      manager.close()
