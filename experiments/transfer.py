"""Fine-tuning against training from scratch, the classic transfer experiment on MNIST:
a network trained on the digits 0-4 starts the training on the digits 5-9, its
convolutions (and their BatchNorm) frozen and its classifier fresh; from scratch, the
same network and epochs; on a thousand training examples of 5-9 and on all of them.
Train the source run first:

  cnnjax train --config configs/mnist.py --workdir runs/digits04 \\
      --config.data.classes='(0, 1, 2, 3, 4)' --config.num_epochs=5
  cnnjax sweep experiments/transfer.py --seeds 3
  cnnjax exp show runs/transfer --aggregate seed --md \\
      --columns data.train_examples,init.from_run,n,test_accuracy,wall_seconds
"""
from pathlib import Path

from cnnjax import config as config_lib
from cnnjax.exp import hyper

SOURCE = "runs/digits04"  # The run on the digits 0-4 (relative to where the sweep runs).


def get_config():
  config = config_lib.load(str(Path(__file__).resolve().parent.parent / "configs" / "mnist.py"))
  config.data.classes = (5, 6, 7, 8, 9)
  config.num_epochs = 2
  return config


def get_points():
  start = hyper.sweep("init.from_run", ["", SOURCE])
  data = hyper.sweep("data.train_examples", [1000, 0])  # A thousand labels, or all of them.
  return [dict(p, **({"init.skip": ("classifier",), "optimizer.frozen": ("conv*", "bn*")}
                     if p["init.from_run"] else {}))
          for p in hyper.product([data, start])]
