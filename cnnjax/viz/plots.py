"""The pictures of `cnnjax viz`: filters, feature maps, confusion matrix, mistakes, curves."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save(fig, path: Path) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, bbox_inches="tight")
  pyplot().close(fig)
  return path


def conv_kernels(params, rank: int = 2) -> dict[str, np.ndarray]:
  """The conv kernels (*window, in, out) of a `rank`-D network by layer name, in network
  order: top-level layers (a ResNet's sit inside its blocks), and the layers of a
  top-level list (an NNX model's `self.convs = nnx.List([...])`, named convs/0, ...)."""
  layers = {}
  for name, layer in params.items():
    if layer and all(isinstance(k, int) for k in layer):
      layers.update({f"{name}/{i}": sub for i, sub in sorted(layer.items())})
    else:
      layers[name] = layer
  kernels = {name: np.asarray(layer["kernel"]) for name, layer in layers.items()
             if "kernel" in layer and np.ndim(layer["kernel"]) == rank + 2}
  return dict(sorted(kernels.items(), key=lambda kv: (len(kv[0]), kv[0])))


def worst_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
  """The wrong predictions the model is most confident about, most confident first."""
  predicted = probabilities.argmax(axis=1)
  wrong = np.nonzero(predicted != labels)[0]
  return wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:count]


def filters(params, path: Path) -> Path | None:
  """Every conv layer's kernels: one row per output channel, one column per input channel."""
  kernels = conv_kernels(params)
  if not kernels:
    return None
  plt = pyplot()
  fig = plt.figure(figsize=(12, 2 + 2.2 * len(kernels)), dpi=110)
  subfigs = fig.subfigures(len(kernels), 1, squeeze=False)[:, 0]
  for subfig, (name, k) in zip(subfigs, kernels.items()):
    kh, kw, cin, cout = k.shape
    shown_in = min(cin, 16)
    grid = np.full((shown_in * (kh + 1) - 1, cout * (kw + 1) - 1), np.nan)
    for o in range(cout):
      for i in range(shown_in):
        w = k[:, :, i, o]
        grid[i * (kh + 1):i * (kh + 1) + kh, o * (kw + 1):o * (kw + 1) + kw] = w
    ax = subfig.subplots()
    limit = np.nanmax(np.abs(grid))
    ax.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    more = f", first {shown_in} of {cin} inputs" if cin > shown_in else ""
    ax.set_title(f"{name}: {cout} filters {kh}x{kw} (columns) x {cin} input channels "
                 f"(rows{more}); red > 0 > blue", fontsize=9)
    ax.axis("off")
  return save(fig, path)


def feature_maps(image: np.ndarray, features: dict[str, np.ndarray], path: Path,
                 max_channels: int = 16) -> Path:
  """The input, then each layer's channels: after every conv block and every pooling."""
  plt = pyplot()
  layers = [("input", image[..., None] if image.ndim == 2 else image)] + list(features.items())
  cols = min(max_channels, max(f.shape[-1] for _, f in layers))
  fig, axes = plt.subplots(len(layers), cols, figsize=(1.1 * cols, 1.3 * len(layers)),
                           dpi=110, squeeze=False)
  for row, (name, fmap) in zip(axes, layers):
    for c, ax in enumerate(row):
      ax.axis("off")
      if c < fmap.shape[-1]:
        ax.imshow(fmap[..., c], cmap="gray" if name == "input" else "viridis",
                  interpolation="nearest")
    h, w = fmap.shape[:2]
    row[0].set_title(f"{name} {h}x{w}x{fmap.shape[-1]}", fontsize=7, loc="left")
  fig.suptitle("feature maps: each conv block (after ReLU), then what max pooling keeps",
               fontsize=9)
  return save(fig, path)


def confusion(matrix: np.ndarray, per_class: list[float], path: Path) -> Path:
  plt = pyplot()
  n = len(matrix)
  fig, ax = plt.subplots(figsize=(1 + 0.6 * n, 0.8 + 0.6 * n), dpi=110)
  ax.imshow(np.log1p(matrix), cmap="Blues")
  for i in range(n):
    for j in range(n):
      ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
              color="white" if matrix[i, j] > matrix.max() / 3 else "black")
  ax.set_xticks(range(n))
  ax.set_yticks(range(n))
  ax.set_yticklabels([f"{i}  ({a:.1%})" for i, a in enumerate(per_class)], fontsize=7)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true  (per-class accuracy)")
  ax.set_title(f"confusion matrix, {int(matrix.sum())} test examples", fontsize=9)
  return save(fig, path)


def mistakes(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, path: Path,
             count: int = 24) -> Path:
  """The wrong predictions the model is most confident about."""
  plt = pyplot()
  predicted = probabilities.argmax(axis=1)
  wrong = worst_mistakes(labels, probabilities, count)
  cols = 8
  rows = max(1, -(-len(wrong) // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows), dpi=110, squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for ax, i in zip(axes.ravel(), wrong):
    ax.imshow(images[i, ..., 0], cmap="gray")
    ax.set_title(f"#{i} true {labels[i]}\npred {predicted[i]} {probabilities[i, predicted[i]]:.0%}",
                 fontsize=6)
  fig.suptitle(f"most confident mistakes ({len(wrong)} of {int((predicted != labels).sum())} "
               f"wrong)", fontsize=9)
  return save(fig, path)


def learning_curves(metrics: list[dict], path: Path) -> Path:
  plt = pyplot()
  fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=110)
  epochs = [m["epoch"] for m in metrics]
  for split in ("train", "val", "test"):  # Test curves only where config.test_curves asked.
    if f"{split}_loss" not in metrics[0]:
      continue
    loss_ax.plot(epochs, [m[f"{split}_loss"] for m in metrics], marker="o", markersize=3, label=split)
    acc_ax.plot(epochs, [m[f"{split}_accuracy"] for m in metrics], marker="o", markersize=3, label=split)
  for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend()
  return save(fig, path)
