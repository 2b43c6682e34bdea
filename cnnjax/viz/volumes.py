"""The pictures of `cnnjax viz` for 3-D inputs (volumes, (depth, height, width)): each
volume as its three central orthogonal slices and three maximum projections, first-layer
filters as grids of slices, feature maps as slices, and class activation maps overlaid
on the volumes the same way."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnjax.viz.plots import pyplot, save

VIEWS = ("slice 0", "slice 1", "slice 2", "max 0", "max 1", "max 2")


def views(volume: np.ndarray) -> list[np.ndarray]:
  """The central slice across each axis, then the maximum projection along each (of a
  CAM: where the class has its strongest evidence along that axis)."""
  d, h, w = volume.shape
  return [volume[d // 2], volume[:, h // 2], volume[:, :, w // 2],
          *[volume.max(axis=a) for a in range(3)]]


def examples(rows: list[tuple[np.ndarray, np.ndarray | None, str]], path: Path, title: str) -> Path:
  """A row per volume (D, H, W, C; its first channel is drawn): its six views, with its
  CAM (D, H, W) overlaid where given."""
  plt = pyplot()
  fig, axes = plt.subplots(len(rows), 6, figsize=(8, 1.5 * len(rows) + 0.6), dpi=110,
                           squeeze=False)
  for row, (volume, cam, label) in zip(axes, rows):
    cam_views = views(cam) if cam is not None else [None] * 6
    limit = max(float(np.abs(cam).max()), 1e-9) if cam is not None else 1.0
    for ax, image, heat, view in zip(row, views(volume[..., 0]), cam_views, VIEWS):
      ax.imshow(image, cmap="gray", interpolation="nearest")
      if heat is not None:
        ax.imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.45, interpolation="bilinear")
      ax.set_xticks([])
      ax.set_yticks([])
      if row is axes[0]:
        ax.set_title(view, fontsize=7)
    row[0].set_ylabel(label, fontsize=6)
  fig.suptitle(title, fontsize=9)
  return save(fig, path)


def filters(kernel: np.ndarray, name: str, path: Path, max_filters: int = 16) -> Path:
  """A conv layer's kernels (kd, kh, kw, in, out): a row per filter (its first input
  channel), its kd slices side by side."""
  plt = pyplot()
  kd, kh, kw, cin, cout = kernel.shape
  shown = min(cout, max_filters)
  limit = float(np.abs(kernel[..., 0, :shown]).max()) or 1.0
  fig, axes = plt.subplots(shown, kd, figsize=(0.9 * kd + 0.5, 0.9 * shown + 0.6), dpi=110,
                           squeeze=False)
  for o, row in enumerate(axes):
    for z, ax in enumerate(row):
      ax.imshow(kernel[z, :, :, 0, o], cmap="RdBu_r", vmin=-limit, vmax=limit,
                interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if o == 0:
        ax.set_title(f"depth {z}", fontsize=7)
  more = f", first {shown} of {cout}" if cout > shown else ""
  fig.suptitle(f"{name}: {cout} filters {kd}x{kh}x{kw} (rows{more}) over {cin} input "
               f"channel(s), slice by slice; red > 0 > blue", fontsize=8)
  return save(fig, path)


def feature_maps(volume: np.ndarray, features: dict[str, np.ndarray], path: Path,
                 max_channels: int = 16) -> Path:
  """The input (D, H, W, C), then each sown layer's channels: the central slice across
  the first axis."""
  plt = pyplot()
  layers = [("input", volume)] + list(features.items())
  cols = min(max_channels, max(f.shape[-1] for _, f in layers))
  fig, axes = plt.subplots(len(layers), cols, figsize=(1.1 * cols, 1.3 * len(layers)),
                           dpi=110, squeeze=False)
  for row, (name, fmap) in zip(axes, layers):
    middle = fmap[fmap.shape[0] // 2]
    for c, ax in enumerate(row):
      ax.axis("off")
      if c < fmap.shape[-1]:
        ax.imshow(middle[..., c], cmap="gray" if name == "input" else "viridis",
                  interpolation="nearest")
    row[0].set_title(f"{name} {'x'.join(map(str, fmap.shape[:3]))}x{fmap.shape[-1]}",
                     fontsize=7, loc="left")
  fig.suptitle("feature maps, central slice across the first axis: each conv block (after "
               "ReLU), then what max pooling keeps", fontsize=9)
  return save(fig, path)
