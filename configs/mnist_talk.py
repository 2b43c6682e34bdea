"""The talk's CNN on MNIST: conv 8 (3x3 SAME), ReLU, max pool 2, conv 16, ReLU, max pool 2,
flatten, dense to the 10 classes; SGD with momentum and a cosine learning-rate decay.

  cnnjax train --config configs/mnist_talk.py --workdir runs/talk
  cnnjax train --config configs/mnist_talk.py --workdir runs/talk9 --config.model.conv_features='(9, 16)'
"""
from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.num_epochs = 5
  config.batch_size = 128
  config.data.validation_examples = 5000  # Held out of the 60,000: selection and curves.
  config.model.conv_features = (8, 16)  # The CNN's defaults, spelled out: the talk's network.
  config.model.kernel_size = 3
  config.model.pool_size = 2
  config.model.dense_features = ()
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.05
  config.optimizer.momentum = 0.9
  config.optimizer.schedule = "cosine"
  # Its steps are short enough for page faults to decide their speed on a CPU: keeping
  # freed memory removes them (benchmarks/allocator.py, docs/performance.md).
  config.keep_freed_memory = True
  return config
