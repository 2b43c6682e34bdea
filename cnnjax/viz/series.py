"""The pictures of `cnnjax viz` for 1-D inputs (time series, (length, channels)):
first-layer filters as curves, feature maps as stacked traces, and series coloured by
their class activation map."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnjax.viz.plots import pyplot, save


def filters(kernel: np.ndarray, name: str, path: Path, max_filters: int = 32) -> Path:
  """A conv layer's kernels (width, in, out): one small plot per filter, a curve per input."""
  plt = pyplot()
  width, cin, cout = kernel.shape
  shown = min(cout, max_filters)
  cols = 8
  rows = -(-shown // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.1 * rows), dpi=110,
                           squeeze=False, sharey=True)
  for o, ax in enumerate(axes.ravel()):
    ax.set_xticks([])
    ax.set_yticks([])
    if o < shown:
      for i in range(cin):
        ax.plot(kernel[:, i, o], linewidth=1)
      ax.axhline(0, color="gray", linewidth=0.5)
    else:
      ax.axis("off")
  more = f", first {shown} of {cout}" if cout > shown else ""
  fig.suptitle(f"{name}: {cout} filters of width {width} over {cin} input channel(s){more}",
               fontsize=9)
  return save(fig, path)


def feature_maps(series: np.ndarray, features: dict[str, np.ndarray], path: Path,
                 max_channels: int = 16) -> Path:
  """The input series, then each sown layer's channels as stacked traces."""
  plt = pyplot()
  layers = [("input", series)] + list(features.items())
  fig, axes = plt.subplots(len(layers), 1, figsize=(9, 1.4 + 1.1 * len(layers)), dpi=110,
                           squeeze=False)
  for ax, (name, fmap) in zip(axes[:, 0], layers):
    shown = min(fmap.shape[-1], max_channels)
    scale = max(float(np.abs(fmap[..., :shown]).max()), 1e-9)
    for c in range(shown):
      ax.plot(fmap[:, c] / scale + 1.2 * c, linewidth=0.8)
    ax.set_yticks([])
    ax.set_title(f"{name}: length {fmap.shape[0]}, {fmap.shape[-1]} channels"
                 + (f" (first {shown})" if shown < fmap.shape[-1] else ""), fontsize=8, loc="left")
  fig.suptitle("feature maps: each conv block (after ReLU) and pooling", fontsize=9)
  fig.tight_layout()
  return save(fig, path)


def examples(examples: list[tuple[np.ndarray, np.ndarray | None, str]], path: Path,
             title: str) -> Path:
  """Series (length, channels), each coloured by its class activation map (length,), when
  it has one: red where the class score comes from, blue where it is held back."""
  plt = pyplot()
  cols = 2
  rows = max(1, -(-len(examples) // cols))
  fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 1.8 * rows), dpi=110, squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for ax, (series, cam, label) in zip(axes.ravel(), examples):
    ax.axis("on")
    t = np.arange(len(series))
    for c in range(series.shape[-1]):
      ax.plot(t, series[:, c], color="lightgray", linewidth=1, zorder=1)
      if cam is not None:
        limit = max(float(np.abs(cam).max()), 1e-9)
        ax.scatter(t, series[:, c], c=cam, cmap="RdBu_r", vmin=-limit, vmax=limit, s=6, zorder=2)
    ax.set_title(label, fontsize=7)
    ax.tick_params(labelsize=6)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return save(fig, path)
