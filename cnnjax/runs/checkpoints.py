"""Orbax checkpoints of a run: the latest few in checkpoints/, and in selected/ the one
config.checkpoint.select picks (the model the run delivers).

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a
killed or failed write never replaces a good checkpoint; the training process cleans
leftovers up when it starts. Readers (`Checkpoints.reader`: eval, predict, viz,
load_run) open the folders read-only: they create, clean and delete nothing, so reading
a run that is training cannot touch the checkpoint it is writing. Checkpoints hold arrays
(tensorstore), never pickles. Saving is synchronous, so a failed write (full disk) is
reported at the step that caused it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from cnnjax import tree_paths
from cnnjax.files import read_json
from cnnjax.errors import CheckpointError
from cnnjax.runs.failpoints import pause_point


def _reason(error: Exception) -> str:
  """The OS-level cause buried in a tensorstore/Orbax error, or its first line."""
  text = str(error)
  code = re.search(r"os_error_code='(\d+)'", text)
  if code:
    return os.strerror(int(code.group(1)))
  return (text.splitlines() or [type(error).__name__])[0][:300]


def as_target(saved, target):
  """`saved`'s leaves in `target`'s tree structure, matched by path: a checkpoint read
  without a target, in which `mismatches` found nothing, as the model's own tree."""
  leaves = tree_paths.leaves(saved)
  return jax.tree.unflatten(jax.tree.structure(target), [leaves[k] for k in tree_paths.leaves(target)])


def mismatches(saved, target) -> list[str]:
  """'path: checkpoint shape vs model shape' for every leaf that differs or is missing."""
  def shapes(tree):
    return {k: tuple(getattr(leaf, "shape", np.shape(leaf))) for k, leaf in tree_paths.leaves(tree).items()}
  a, b = shapes(saved), shapes(target)
  out = [f"{k}: checkpoint {a.get(k, 'missing')} vs model {b.get(k, 'missing')}"
         for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
  return out


class _AtomicRename(ocp.path.atomicity.AtomicRenameTemporaryPath):
  """Orbax's atomic rename of a complete temporary folder, with a failpoint just before a
  checkpoint's own folder (not one of its items') is renamed (runs.failpoints:
  "checkpoint_commit")."""

  async def finalize(self) -> None:
    if self.get_final().name.isdigit():
      pause_point("checkpoint_commit")
    await super().finalize()


class Checkpoints:
  """The checkpoints of the training process (which alone writes them), or of a reader."""

  def __init__(self, workdir: Path, keep: int, read_only: bool = False):
    def manager(folder: Path, n: int):
      if read_only:
        options = ocp.CheckpointManagerOptions(read_only=True, create=False, max_to_keep=None,
                                               save_interval_steps=0,
                                               cleanup_tmp_directories=False)
      else:
        options = ocp.CheckpointManagerOptions(max_to_keep=n, create=True,
                                               enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True,
                                               temporary_path_class=_AtomicRename)
      return ocp.CheckpointManager(folder, options=options,
                                   item_handlers=ocp.StandardCheckpointHandler())
    self.directory = workdir.resolve() / "checkpoints"
    self._latest = manager(self.directory, keep)
    self._selected = manager(workdir.resolve() / "selected", 1)

  @classmethod
  def reader(cls, workdir: Path) -> "Checkpoints":
    """Read-only checkpoints: nothing in `workdir` is created, cleaned or deleted."""
    return cls(workdir, keep=1, read_only=True)

  def latest_step(self) -> int | None:
    return self._latest.latest_step()

  def restore_latest(self, target):
    """The latest checkpoint restored into the structure of `target` (or None).

    A checkpoint whose arrays do not fit `target` (the model's config changed) raises
    CheckpointError listing every mismatched parameter.
    """
    return self._restore(self._latest, target)

  def selected_step(self) -> int | None:
    return self._selected.latest_step()

  def restore_selected(self, target):
    """The selected checkpoint restored into the structure of `target` (or None)."""
    return self._restore(self._selected, target)

  @staticmethod
  def _restore(manager, target):
    step = manager.latest_step()
    if step is None:
      return None
    saved = manager.item_metadata(step)
    if saved is not None:
      wrong = mismatches(saved, target)
      if wrong:
        raise CheckpointError(f"checkpoint {manager.directory / str(step)} does not fit this "
                              f"model ({len(wrong)} mismatched): " + "; ".join(wrong))
    # Read as saved and placed in `target`'s structure by path, so that a container without
    # leaves in one and absent in the other (a state field added to cnnjax since, such as
    # an empty moving average) is no mismatch: every leaf is checked above.
    return as_target(manager.restore(step, args=ocp.args.StandardRestore()), target)

  def restore_arrays(self, which: str = "selected") -> tuple[int, dict]:
    """(step, nested dict of numpy arrays) of the selected or latest checkpoint, or of the
    kept checkpoint of step `which` (a number as text), no target."""
    manager = self._selected if which == "selected" else self._latest
    step = int(which) if which.isdigit() else manager.latest_step()
    if step is None:
      raise CheckpointError(f"no {which} checkpoint under {self.directory.parent}")
    if which.isdigit() and step not in self.steps():
      raise CheckpointError(f"no checkpoint of step {step} under {self.directory.parent}; it "
                            f"keeps steps {', '.join(map(str, self.steps())) or 'none'}")
    if step not in manager.all_steps():
      manager = self._selected
    return step, manager.restore(step, args=ocp.args.StandardRestore())

  def steps(self) -> list[int]:
    """The steps of every checkpoint kept (latest ones and the selected one)."""
    return sorted(set(self._latest.all_steps()) | set(self._selected.all_steps()))

  def save(self, step: int, state, selected: bool, latest: bool = True) -> None:
    """Writes `state` as the checkpoint of `step` in checkpoints/ (`latest`), then in
    selected/ (`selected`)."""
    managers = ([self._latest] if latest else []) + ([self._selected] if selected else [])
    where = self.directory.parent  # Named in the error: the copy that failed, once known.
    try:
      host = jax.device_get(state)  # NumPy: with several processes, process 0 writes it.
      for manager in managers:
        where = manager.directory
        if step in manager.all_steps():  # Left by a session killed after this point.
          manager.delete(step)
        manager.save(step, args=ocp.args.StandardSave(host))
    except Exception as e:  # Orbax and tensorstore raise ValueError/OSError alike.
      last = self._latest.latest_step()
      complete = "none is complete" if last is None else f"the latest complete is step {last}"
      raise CheckpointError(f"could not write the checkpoint of step {step} in {where}: "
                            f"{_reason(e)}; {complete}") from e

  def close(self) -> None:
    for manager in (self._latest, self._selected):
      manager.wait_until_finished()
      manager.close()


def delivered_variables(workdir: Path, which: str = "selected") -> tuple[int, dict]:
  """(step, {"params", "batch_stats"} as numpy arrays) of a run's `which` checkpoint
  ("selected", "latest" or a kept step) as the run delivers its model: the moving average
  of the weights where its config.checkpoint.select is "ema_val_accuracy"."""
  config = read_json(workdir / "config.json") or {}
  step, arrays = Checkpoints.reader(workdir).restore_arrays(which)
  state = arrays["state"]
  if config.get("checkpoint", {}).get("select") == "ema_val_accuracy":
    state = state["ema"]
  return step, {k: state.get(k, {}) for k in ("params", "batch_stats")}
