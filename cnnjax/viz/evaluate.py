"""Evaluating a loaded run on a data set: loss, accuracy, per-class accuracy, confusion."""
from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """counts[true, predicted]."""
  counts = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(counts, (labels, predictions), 1)
  return counts


def evaluate_run(run, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
  logits = run.logits(images).astype(np.float64)
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  predictions = logits.argmax(axis=1)
  confusion = confusion_matrix(labels, predictions, run.num_classes)
  per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
  return {
      "examples": int(len(labels)),
      "loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
      "accuracy": float((predictions == labels).mean()),
      "per_class_accuracy": [float(a) for a in per_class],
      "confusion": confusion.tolist(),
      "predictions": predictions, "probabilities": np.exp(log_probs),
  }
