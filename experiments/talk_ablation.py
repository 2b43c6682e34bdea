"""The talk's live demo done right: the talk CNN with 4, 8, 9 and 16 channels in its first
conv layer (in the talk, 8 -> 9 crashed with a shape mismatch) and three learning rates.
Successive halving trains all 12 points for one epoch, the best 4 by validation accuracy
(mean over seeds) to epoch 3 and the best one to the end; --no-halving trains the grid.

  cnnjax sweep experiments/talk_ablation.py --seeds 3 [--root runs/talk_ablation] [--workers 2]
  cnnjax sweep experiments/talk_ablation.py --seeds 3 --no-halving --root runs/talk_grid
  cnnjax exp show runs/talk_ablation --aggregate seed --sort-by test_accuracy --desc --md \
      --columns model.conv_features,optimizer.learning_rate,n,test_accuracy,val_accuracy
"""
from cnnjax.exp import hyper

BASE = "configs/mnist_talk.py"  # Relative to this file's folder or its parent.
HALVING = hyper.halving(metric="val_accuracy", min_epochs=1, eta=3)


def get_points():
  return hyper.product([
      hyper.sweep("model.conv_features", [(4, 16), (8, 16), (9, 16), (16, 16)]),
      hyper.sweep("optimizer.learning_rate", [0.02, 0.05, 0.1]),
  ])
