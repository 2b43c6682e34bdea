"""What `cnnjax viz`, `predict` and `eval` do with a run directory."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cnnjax import config as config_lib
from cnnjax import data
from cnnjax.exp.table import format_table
from cnnjax.runs import records
from cnnjax.loaded import LoadedRun, load_run
from cnnjax.runs.reader import read_run
from cnnjax.viz import images as image_io
from cnnjax.viz import plots
from cnnjax.viz.evaluate import evaluate_run


def _whole_dataset(run: LoadedRun, overrides: dict[str, Any] | None = None):
  """The run's data set, or another one named by {'data.dir': ...}-style overrides, whole:
  nothing held out of or cut from its training split (callers use its test split)."""
  config = config_lib.with_overrides(
      run.config, {**(overrides or {}), "data.validation_examples": 0, "data.train_examples": 0})
  return data.load(config.data, config.seed)


def visualize(path: str | Path, output: str | Path | None = None, index: int = 0,
              image: str | Path | None = None, checkpoint: str = "selected",
              invert: str = "auto", log=print) -> list[Path]:
  """Writes filters, feature maps, confusion matrix, mistakes and curves as PNGs."""
  run = load_run(path, checkpoint)
  out = Path(output or Path(path) / "viz")
  dataset = _whole_dataset(run)
  written = []
  grayscale_2d = len(run.input_shape) == 3 and run.input_shape[-1] == 1  # (H, W, 1) inputs.
  made = plots.filters(run.variables["params"], out / "filters.png") if grayscale_2d else None
  if made:
    written.append(made)
  elif grayscale_2d:
    log(f"{run.config.model.name}: no conv filters to draw (a {run.config.model.name} has no "
        f"convolutions); drawing the rest")
  else:
    log(f"input {run.input_shape}: filters, feature maps and mistakes are drawn for "
        f"grayscale 2-D images only; drawing the rest")
  if grayscale_2d:
    if image is not None:
      example = image_io.prepare(image_io.read_image(image), run.input_shape, invert, str(image))
    else:
      example = dataset.test_images[index]
    features = run.features(example)
    if features:
      written.append(plots.feature_maps(example[..., 0], features, out / "feature_maps.png"))
    else:
      log(f"{run.config.model.name}: no feature maps (no conv layers)")
  result = evaluate_run(run, dataset.test_images, dataset.test_labels)
  written.append(plots.confusion(np.asarray(result["confusion"]), result["per_class_accuracy"],
                                 out / "confusion.png"))
  if grayscale_2d:
    written.append(plots.mistakes(dataset.test_images, dataset.test_labels,
                                  result["probabilities"], out / "mistakes.png"))
  history = read_run(Path(path)).metrics()
  if history:
    written.append(plots.learning_curves(history, out / "curves.png"))
  return written


def predict_files(path: str | Path, files: Sequence[str | Path], top_k: int = 3,
                  invert: str = "auto", checkpoint: str = "selected") -> list[dict[str, Any]]:
  """Top-k classes with probabilities for each image file (or .npy array)."""
  run = load_run(path, checkpoint)
  prepared = [image_io.prepare(image_io.read_image(f), run.input_shape, invert, str(f))
              for f in files]
  probabilities = run.predict(np.stack(prepared))
  results = []
  for file, p in zip(files, probabilities):
    top = np.argsort(-p)[:top_k]
    results.append({"file": str(file), "top": [{"class": int(c), "probability": float(p[c])}
                                               for c in top]})
  return results


def evaluate_on(path: str | Path, overrides: dict[str, Any] | None = None,
                checkpoint: str = "selected") -> dict[str, Any]:
  """Evaluates the run's checkpoint on the (possibly overridden) data set; saves the result
  as RUN/eval/<checkpoint>-step<N>-<data location>.json."""
  run = load_run(path, checkpoint)
  dataset = _whole_dataset(run, overrides)
  result = evaluate_run(run, dataset.test_images, dataset.test_labels)
  result = {k: v for k, v in result.items() if k not in ("predictions", "probabilities")}
  result.update(checkpoint=checkpoint, step=run.step, data=dataset.location)
  name = re.sub(r"[^\w.-]+", "_", dataset.location).strip("_")[-80:]
  out = Path(path) / "eval" / f"{checkpoint}-step{run.step}-{name}.json"
  records.write_json(out, result)
  result["saved"] = str(out)
  return result


def format_eval(result: dict[str, Any]) -> str:
  lines = [f"{result['checkpoint']} checkpoint (step {result['step']}) on {result['data']}",
           f"examples {result['examples']}  loss {result['loss']:.4f}  "
           f"accuracy {result['accuracy']:.4f}",
           "per class (rows: true class; numbered columns: predicted class):"]
  classes = len(result["confusion"])
  rows = [[str(c), f"{a:.4f}", *map(str, counts)] for c, (a, counts)
          in enumerate(zip(result["per_class_accuracy"], result["confusion"]))]
  lines.append(format_table(["class", "accuracy", *map(str, range(classes))], rows,
                            right=range(classes + 2)))
  lines.append(f"saved {result['saved']}")
  return "\n".join(lines)
