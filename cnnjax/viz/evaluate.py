"""Evaluating a loaded run on a data set: loss, accuracy, per-class accuracy, confusion.

Loss and accuracy are computed as training evaluates (`steps.eval_metrics`), so the
figures of `cnnjax eval` and of summary.json are the same computation."""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from cnnjax.train import steps

_metrics = jax.jit(lambda logits, labels: steps.eval_metrics(logits, labels).compute())


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """counts[true, predicted]."""
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (labels, predictions), 1)
  return counts


def evaluate_run(run, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
  logits = run.logits(images)
  metrics = _metrics(logits, np.asarray(labels, np.int32))
  predictions = logits.argmax(axis=1)
  confusion = confusion_matrix(labels, predictions, run.num_classes)
  per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
  return {
      "examples": int(len(labels)),
      "loss": float(metrics["loss"]),
      "accuracy": float(metrics["accuracy"]),
      "per_class_accuracy": [float(a) for a in per_class],
      "confusion": confusion.tolist(),
      "predictions": predictions,
      "probabilities": np.asarray(jax.nn.softmax(logits, axis=-1)),  # As run.predict.
  }
