"""Why a 2-D projection wins or loses on volumetric digits: test accuracy of trained
digits3d runs binned by how far each test digit's slab is tilted away from the projection
axis ("cos": |cos| of the angle between the slab's normal and the cube's first axis; 1 =
face on to the projection, 0 = edge on).

  python benchmarks/digits3d_tilt.py RUN [RUN ...]

Each RUN is a run directory of configs/digits3d.py (3-D, or :2d); runs on the same
volumes (same data fields) are compared bin by bin.
"""
from __future__ import annotations

import argparse

import numpy as np

import cnnjax
from cnnjax import data, runtime
from cnnjax.data import digits3d

BINS = (0.0, 0.25, 0.5, 0.75, 1.0)


def tilt(n: int, source: digits3d.Source) -> np.ndarray:
  """|cos| of each test example's slab normal to the first axis, as digits3d drew it."""
  rngs = digits3d.example_rngs(source.seed, digits3d.SPLITS["test"], range(n))
  return np.abs(digits3d.rotation(digits3d.angles(rngs, source.max_rotation))[:, 0, 0])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("runs", nargs="+")
  args = parser.parse_args()
  runtime.start_command("eval")  # Quiet about reading checkpoints read-only.
  columns = ["run", "max_rotation", *[f"cos {a:.2f}-{b:.2f}" for a, b in zip(BINS, BINS[1:])], "all"]
  print("| " + " | ".join(columns) + " |")
  print("|" + " --- |" * len(columns))
  for path in args.runs:
    run = cnnjax.load_run(path)
    d = run.config.data
    dataset = data.load(d)  # The test split is whole: only training examples are held out.
    test_images, test_labels = dataset.test_images, dataset.test_labels
    source = digits3d.Source(size=d.size, thickness=d.thickness, max_rotation=d.max_rotation,
                             noise=d.noise, seed=d.seed)
    correct = run.predict(test_images).argmax(axis=1) == test_labels
    cos = tilt(len(correct), source)
    cells = []
    for a, b in zip(BINS, BINS[1:]):
      inside = (cos >= a) & ((cos < b) if b < 1 else (cos <= b))
      cells.append(f"{correct[inside].mean():.1%} of {inside.sum():,}" if inside.any() else "-")
    name = "2-D projection" if d.project_axis >= 0 else "3-D"
    print(f"| {name} (seed {run.config.seed}) | {d.max_rotation:g} | " + " | ".join(cells)
          + f" | {correct.mean():.2%} |")


if __name__ == "__main__":
  main()
