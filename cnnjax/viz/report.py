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
from cnnjax.viz import pictures, plots
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
  """Writes PNGs of a trained run for its input's rank: filters, feature maps, class
  activation maps (1-D, 3-D), the confusion matrix, mistakes and the learning curves.
  Pictures that do not apply to the model are skipped with a line saying why."""
  run = load_run(path, checkpoint)
  out = Path(output or Path(path) / "viz")
  dataset = _whole_dataset(run)
  result = evaluate_run(run, dataset.test_images, dataset.test_labels)
  if image is not None:
    example = _examples(run, image, invert)[0]
  else:
    example = dataset.test_images[index]
  written = pictures.draw(run, dataset, result, example, out, log)
  written.append(plots.confusion(np.asarray(result["confusion"]), result["per_class_accuracy"],
                                 out / "confusion.png"))
  history = read_run(Path(path)).metrics()
  if history:
    written.append(plots.learning_curves(history, out / "curves.png"))
  return written


def _examples(run: LoadedRun, file: str | Path, invert: str) -> np.ndarray:
  """(n, *input_shape) examples from a file: an image, or a .npy array of one image of
  any size, for 2-D runs (prepared as MNIST was); else a .npy array of one example or a
  batch of the run's input."""
  array = image_io.read_image(file)
  one_image = array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 1)
  if len(run.input_shape) == 3 and (Path(file).suffix != ".npy" or one_image):
    return image_io.prepare(array, run.input_shape, invert, str(file))[None]
  return image_io.as_examples(array, run.input_shape, run.input_dtype, str(file))


def predict_files(path: str | Path, files: Sequence[str | Path], top_k: int = 3,
                  invert: str = "auto", checkpoint: str = "selected") -> list[dict[str, Any]]:
  """Top-k classes with probabilities for each example of each file (an image, or a .npy
  array of one example or a batch); a batch's results carry their `index` in the file."""
  run = load_run(path, checkpoint)
  prepared = [(f, _examples(run, f, invert)) for f in files]
  probabilities = run.predict(np.concatenate([e for _, e in prepared]))
  results, row = [], 0
  for file, examples in prepared:
    for i in range(len(examples)):
      p = probabilities[row]
      row += 1
      top = np.argsort(-p)[:top_k]
      result = {"file": str(file), "top": [{"class": int(c), "probability": float(p[c])}
                                           for c in top]}
      results.append(result if len(examples) == 1 else {**result, "index": i})
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
