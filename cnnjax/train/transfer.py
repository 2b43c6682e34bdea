"""Starting a run from a trained one (config.init): its parameters and BatchNorm
statistics, except those `init.skip` names, replace the new model's fresh ones.

Everything is checked where the model is built, before anything compiles or is written:
the source is a run with that checkpoint, the patterns match parameters, and every
loaded array has the shape of the parameter it replaces.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import jax
import numpy as np

from cnnjax import tree_paths
from cnnjax.errors import CheckpointError, ConfigError
from cnnjax.runs import checkpoints


@dataclasses.dataclass(frozen=True)
class Initial:
  """What a run starts from: {"params", "batch_stats"} (a fresh leaf where skipped) and
  the record of where it came from (run.json's "init")."""
  variables: dict
  record: dict[str, Any]


def load(init_config, fresh) -> Initial | None:
  """The starting variables config.init asks for, in the structure of `fresh` (the new
  model's {"params", "batch_stats"}, arrays or shapes); None when it asks for none."""
  if not init_config.from_run:
    return None
  source = Path(init_config.from_run)
  if not (source / "config.json").is_file():
    raise ConfigError("init.from_run", f"{str(source)!r} is not a run directory (no config.json)")
  try:
    step, variables = checkpoints.delivered_variables(source, init_config.checkpoint)
  except CheckpointError as e:
    raise ConfigError("init.checkpoint", str(e)) from e
  tree_paths.check_patterns(fresh, init_config.skip, "init.skip", collections=True)
  out, wrong, skipped, digest = [], [], [], hashlib.sha256()
  for collection in ("batch_stats", "params"):  # The order of their dict's leaves.
    loaded = tree_paths.leaves(variables[collection])
    for path, leaf in tree_paths.leaves(fresh.get(collection, {})).items():
      if tree_paths.matches(path, init_config.skip):
        out.append(leaf)
        skipped.append(f"{collection}/{path}")
        continue
      if path not in loaded:
        wrong.append(f"{collection}/{path}: not in the source, model {tuple(leaf.shape)}")
        continue
      array = np.asarray(loaded[path]).astype(leaf.dtype)
      if array.shape != tuple(leaf.shape):
        wrong.append(f"{collection}/{path}: source {array.shape} vs model {tuple(leaf.shape)}")
        continue
      digest.update(f"{collection}/{path}".encode() + b"\0" + array.tobytes())
      out.append(array)
  if wrong:
    raise ConfigError("init.from_run", f"{source} ({init_config.checkpoint} checkpoint) does "
                      f"not fit this model; add the parameters to config.init.skip to start "
                      f"them fresh: " + "; ".join(wrong))
  record = {"from_run": str(source.resolve()), "checkpoint": init_config.checkpoint,
            "step": step, "sha256": digest.hexdigest(), "skipped": skipped,
            "loaded": len(out) - len(skipped)}
  fresh = {"params": fresh["params"], "batch_stats": fresh.get("batch_stats", {})}
  return Initial(jax.tree.unflatten(jax.tree.structure(fresh), out), record)


def start(state, initial: Initial | None):
  """The fresh `state` with the initial variables in place of its own; skipped leaves keep
  their fresh values."""
  if initial is None:
    return state
  own = {"params": state.params, "batch_stats": state.batch_stats}
  skipped = set(initial.record["skipped"])
  pairs = zip(tree_paths.leaves(own).items(), jax.tree.leaves(initial.variables))
  merged = jax.tree.unflatten(jax.tree.structure(own),
                              [mine if path in skipped else theirs for (path, mine), theirs in pairs])
  return state.replace(params=merged["params"], batch_stats=merged["batch_stats"])
