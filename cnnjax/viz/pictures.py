"""What `cnnjax viz` draws for a run's input rank: 2-D images (filters, feature maps,
mistakes), 1-D series and 3-D volumes (filters, feature maps, examples and mistakes with
their class activation maps). The confusion matrix and curves are drawn for every rank
(cnnjax.viz.report)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnjax.viz import plots, series, volumes
from cnnjax.viz.cam import class_activation_maps, upsample


def draw(run, dataset, result, example, out: Path, log) -> list[Path]:
  """The rank's pictures of `run` (a LoadedRun) in `out`; `result` is its evaluation on
  `dataset`'s test split, `example` the input whose feature maps are drawn."""
  rank = len(run.input_shape) - 1
  return {1: _series, 2: _images, 3: _volumes}[rank](run, dataset, result, example, out, log)


def _first_kernel(run, rank: int, log):
  kernels = plots.conv_kernels(run.variables["params"], rank)
  if not kernels:
    log(f"{run.config.model.name}: no first-layer filters to draw (no top-level "
        f"{rank}-D conv layer)")
    return None
  return next(iter(kernels.items()))


def _images(run, dataset, result, example, out, log) -> list[Path]:
  """2-D: every conv layer's filters, feature maps and mistakes, for grayscale images."""
  if run.input_shape[-1] != 1:
    log(f"input {run.input_shape}: filters, feature maps and mistakes are drawn for "
        f"grayscale 2-D images only; drawing the rest")
    return []
  written = []
  made = plots.filters(run.variables["params"], out / "filters.png")
  if made:
    written.append(made)
  else:
    log(f"{run.config.model.name}: no conv filters to draw (a {run.config.model.name} has no "
        f"convolutions); drawing the rest")
  features = run.features(example)
  if features:
    written.append(plots.feature_maps(example[..., 0], features, out / "feature_maps.png"))
  else:
    log(f"{run.config.model.name}: no feature maps (no conv layers)")
  written.append(plots.mistakes(dataset.test_images, dataset.test_labels,
                                result["probabilities"], out / "mistakes.png"))
  return written


def _explained(run, dataset, result, indices, log) -> list[tuple]:
  """(example, its CAM for the predicted class at the input's positions or None, title)."""
  rows, why = [], ""
  spatial = run.input_shape[:-1]
  for i in indices:
    example = dataset.test_images[i]
    logits, features = run.logits_and_features(example)
    cams, why = class_activation_maps(run.variables["params"], features, logits)
    predicted = int(np.argmax(logits))
    cam = None if cams is None else upsample(cams, spatial)[..., predicted]
    p = result["probabilities"][i, predicted]
    rows.append((example, cam, f"#{i} true {dataset.test_labels[i]} pred {predicted} {p:.0%}"))
  if why:
    log(f"{run.config.model.name}: no class activation maps: {why}")
  return rows


def _shown(dataset, count: int) -> list[int]:
  """The first test example of each class (then the next ones), `count` in all."""
  labels = dataset.test_labels
  firsts = [int(np.argmax(labels == c)) for c in np.unique(labels)][:count]
  rest = [i for i in range(min(len(labels), count + len(firsts))) if i not in firsts]
  return (firsts + rest)[:count]


def _series(run, dataset, result, example, out, log) -> list[Path]:
  """1-D: first-layer filters as curves, feature maps as traces, series with their CAM."""
  return _with_cams(series, 8, run, dataset, result, example, out, log)


def _volumes(run, dataset, result, example, out, log) -> list[Path]:
  """3-D: slices and projections of examples with their CAM, filters, feature maps."""
  return _with_cams(volumes, 6, run, dataset, result, example, out, log)


def _with_cams(draws, count: int, run, dataset, result, example, out, log) -> list[Path]:
  """The pictures of a 1-D or 3-D run, drawn by `draws` (cnnjax.viz.series or volumes):
  filters, feature maps, and `count` examples and mistakes with their CAM."""
  written = []
  kernel = _first_kernel(run, len(run.input_shape) - 1, log)
  if kernel:
    written.append(draws.filters(kernel[1], kernel[0], out / "filters.png"))
  features = run.features(example)
  if features:
    written.append(draws.feature_maps(example, features, out / "feature_maps.png"))
  examples = _explained(run, dataset, result, _shown(dataset, count), log)
  written.append(draws.examples(examples, out / "examples.png", _CAM_TITLE))
  wrong = plots.worst_mistakes(dataset.test_labels, result["probabilities"], count)
  if len(wrong):
    written.append(draws.examples(_explained(run, dataset, result, wrong, lambda _: None),
                                  out / "mistakes.png", f"most confident mistakes; {_CAM_TITLE}"))
  return written


_CAM_TITLE = ("class activation map of the predicted class (where there is one): red where "
              "the class score comes from, blue where it is held back")
