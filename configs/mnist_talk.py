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
  config.model.name = "cnn"
  config.model.conv_features = (8, 16)
  config.model.kernel_size = 3
  config.model.pool_size = 2
  config.model.dense_features = ()
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.05
  config.optimizer.momentum = 0.9
  config.optimizer.schedule = "cosine"
  # Its steps are fast enough for page faults to decide their speed: with glibc's
  # defaults 2 of 4 processes had 2,000-2,600 faults per step and trained at 11,800-14,000
  # images/s (the other two at 30,000-31,600); with memory kept none had faults
  # (24,700-32,200) (python benchmarks/allocator.py, 2-core AMD EPYC).
  config.keep_freed_memory = True
  return config
