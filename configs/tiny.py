"""A tiny variant for tests and smoke runs: every feature of configs/mnist.py (BatchNorm,
dropout, shifts, AdamW one-cycle) at a size that trains in seconds. Point it at data:

  cnnjax train --config configs/tiny.py --workdir runs/tiny --config.data.dir=DIR
"""
from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.num_epochs = 2
  config.batch_size = 16
  config.data.num_classes = 4
  config.data.validation_examples = 32
  config.data.mean = 0.5
  config.data.std = 0.5
  config.data.augment_shift = 1
  config.data.augment_rotate = 10.0
  config.data.augment_scale = 0.1
  config.data.eval_batch_size = 24  # Does not divide the test set: exercises padding.
  config.model.conv_features = (4, 8)
  config.model.dense_features = (16,)
  config.model.batch_norm = True
  config.model.dropout_rate = 0.25
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 0.01
  config.optimizer.weight_decay = 0.0001
  config.optimizer.schedule = "onecycle"
  config.optimizer.warmup_epochs = 0.3
  config.log_every_seconds = 0.0
  return config
