"""The talk's CNN on MNIST: conv 8 (3x3 SAME), ReLU, max pool 2, conv 16, ReLU, max pool 2,
flatten, dense to the 10 classes; SGD with momentum and a cosine learning-rate decay.
With the argument `nnx`, the same network written in Flax NNX (cnnjax/models/nnx_cnn.py),
trained the same way.

  cnnjax train --config configs/mnist_talk.py --workdir runs/talk
  cnnjax train --config configs/mnist_talk.py --workdir runs/talk9 --config.model.conv_features='(9, 16)'
  cnnjax train --config configs/mnist_talk.py:nnx --workdir runs/talk_nnx
"""
from cnnjax import models
from cnnjax.config import base_config


def get_config(api: str = "linen"):
  config = base_config()
  config.num_epochs = 5
  config.batch_size = 128
  config.data.validation_examples = 5000  # Held out of the 60,000: selection and curves.
  config.model.conv_features = (8, 16)  # The CNN's defaults, spelled out: the talk's network.
  config.model.kernel_size = 3
  config.model.pool_size = 2
  config.model.dense_features = ()
  if api == "nnx":
    config.model = models.config("nnx_cnn", conv_features=(8, 16), kernel_size=3, pool_size=2)
  elif api != "linen":
    raise ValueError(f"configs/mnist_talk.py:{api}: the argument is 'linen' or 'nnx'")
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.05
  config.optimizer.momentum = 0.9
  config.optimizer.schedule = "cosine"
  # Its steps are short enough for page faults to decide their speed on a CPU: keeping
  # freed memory removes them (benchmarks/allocator.py, docs/performance.md).
  config.keep_freed_memory = True
  return config
