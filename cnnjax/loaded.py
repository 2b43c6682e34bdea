"""A trained run in one call: its config, model and parameters, ready to predict.

    run = cnnjax.load_run("runs/talk")          # selected checkpoint; checkpoint="latest"
    probabilities = run.predict(images)          # uint8 (N, 28, 28, 1) -> (N, classes)

Loading reads the run directory and writes nothing to it: a run may be training there.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import config as config_lib
from cnnjax import models
from cnnjax.data import pipeline
from cnnjax.errors import CheckpointError, UsageError
from cnnjax.runs.checkpoints import as_target, delivered_variables, mismatches
from cnnjax.runs.reader import read_run
from cnnjax.train import steps


@dataclasses.dataclass
class LoadedRun:
  path: Path
  config: Any  # ml_collections.ConfigDict
  model: Any  # flax.linen.Module
  variables: dict  # {"params": ..., "batch_stats": ...}
  input_shape: tuple[int, ...]
  num_classes: int
  step: int
  input_dtype: str | None = None  # Of the training data ("uint8", "float32"); None: not recorded.

  @functools.cached_property
  def _forward(self):
    """steps.forward for this run, compiled: logits, and logits with feature maps."""
    d = self.config.data
    forward = functools.partial(steps.forward, self.model.apply, mean=d.mean, std=d.std)
    return jax.jit(forward), jax.jit(functools.partial(forward, capture=True))

  def logits(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Logits of raw-pixel images (uint8, the training data's shape), in batches."""
    images = np.asarray(images)
    if images.shape[1:] != self.input_shape:
      raise UsageError(f"images of shape {images.shape[1:]} do not fit the model's input "
                       f"{self.input_shape}")
    out = []  # Batches of one shape (the last one padded): one compilation.
    size = max(1, min(batch_size, len(images)))
    for batch in pipeline.eval_batches(images, np.zeros(len(images), np.int32), size):
      out.append(np.asarray(self._forward[0](self.variables, batch["images"]))[batch["mask"]])
    return np.concatenate(out)

  def predict(self, images: np.ndarray) -> np.ndarray:
    """Class probabilities, (N, num_classes)."""
    return np.asarray(jax.nn.softmax(self.logits(images), axis=-1))

  def features(self, image: np.ndarray) -> dict[str, np.ndarray]:
    """Feature maps of one example: what the model sows (the CNN: after every conv block's
    ReLU and every pooling)."""
    return self.logits_and_features(image)[1]

  def logits_and_features(self, image: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One example's logits and feature maps, from one forward pass."""
    logits, features = self._forward[1](self.variables, jnp.asarray(image)[None])
    return np.asarray(logits[0]), {k: np.asarray(v[0]) for k, v in features.items()}


def load_run(path: str | Path, checkpoint: str = "selected") -> LoadedRun:
  """Loads a run directory's config, model and the `selected` (the model the run
  delivers, see config.checkpoint.select), `latest` or a kept step's parameters (a number
  as text). A run that delivers its moving average of the weights
  (checkpoint.select="ema_val_accuracy") gives that average."""
  record = read_run(Path(path))
  if not record.config:
    raise UsageError(f"{path} holds no config.json: not a run directory")
  if "input_shape" not in record.summary:
    raise CheckpointError(f"{path}/summary.json does not record the input shape; "
                          f"train the run with this version of cnnjax")
  config = config_lib.from_dict(record.config)
  input_shape = tuple(record.summary["input_shape"])
  num_classes = int(record.summary["num_classes"])
  model = models.build(config.model, num_classes, input_shape)
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *input_shape))))
  expected = {k: v for k, v in expected.items() if k in ("params", "batch_stats")}
  step, saved = delivered_variables(Path(path), checkpoint)
  variables = {k: saved[k] for k in expected}
  wrong = mismatches(variables, expected)
  if wrong:
    raise CheckpointError(f"the {checkpoint} checkpoint of {path} does not fit its config's "
                          f"model: " + "; ".join(wrong))
  variables = jax.tree.map(jnp.asarray, as_target(variables, expected))
  return LoadedRun(Path(path), config, model, variables, input_shape, num_classes, step,
                   record.summary.get("input_dtype"))
