"""The talk's live demo done right: the talk CNN with 4, 8, 9 and 16 channels in its first
conv layer. In the talk, 8 -> 9 crashed with a shape mismatch; here every point trains.

  python experiments/talk_widths.py [--root runs/talk_widths] [--epochs N]

Each point is a set of config overrides with its own run directory under the root; a
finished point is not trained again (its workdir already holds the finished run).
"""
import argparse
import json
from pathlib import Path

import cnnjax

BASE = str(Path(__file__).resolve().parent.parent / "configs" / "mnist_talk.py")
POINTS = [{"model.conv_features": (width, 16)} for width in (4, 8, 9, 16)]


def run_name(point: dict) -> str:
  return "_".join(f"{k.split('.')[-1]}={'-'.join(map(str, v)) if isinstance(v, tuple) else v}"
                  for k, v in point.items())


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--root", default="runs/talk_widths")
  parser.add_argument("--epochs", type=int, default=None, help="override num_epochs")
  args = parser.parse_args()
  rows = []
  for point in POINTS:
    overrides = dict(point, **({"num_epochs": args.epochs} if args.epochs else {}))
    config = cnnjax.load_config(BASE, overrides)
    workdir = Path(args.root) / run_name(point)
    summary = cnnjax.train_and_evaluate(config, workdir)
    rows.append((run_name(point), summary))
  print(f"\n{'run':<28} {'params':>8} {'test acc':>9} {'best':>7} {'img/s':>8}")
  for name, s in rows:
    print(f"{name:<28} {s['params']:>8,} {s['test_accuracy']:>9.4f} "
          f"{s['best_test_accuracy']:>7.4f} {s['images_per_second']:>8,.0f}")
  (Path(args.root) / "results.json").write_text(json.dumps(dict(rows), indent=2))


if __name__ == "__main__":
  main()
