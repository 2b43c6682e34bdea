"""The talk's CNN written with Linen (configs/mnist_talk.py) against the same network
written with Flax NNX (model.name="nnx_cnn"), trained alike: the two APIs should give the
same accuracy within the seed spread.

  cnnjax sweep experiments/talk_nnx.py --seeds 3
  cnnjax exp show runs/talk_nnx --aggregate seed --md \\
      --columns model.name,n,test_accuracy,val_accuracy,wall_seconds
"""

BASE = "configs/mnist_talk.py"  # Relative to this file's folder or its parent.


def get_points():
  return [{}, {"model.name": "nnx_cnn"}]
