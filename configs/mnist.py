"""The default MNIST model: two conv blocks with BatchNorm, a hidden dense layer with
dropout, random shifts of up to 2 pixels, AdamW with a one-cycle schedule.

  cnnjax train --config configs/mnist.py --workdir runs/base
"""
from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.num_epochs = 15
  config.batch_size = 128
  config.label_smoothing = 0.1
  config.data.augment_shift = 2
  config.model.name = "cnn"
  config.model.conv_features = (32, 64)
  config.model.dense_features = (128,)
  config.model.batch_norm = True
  config.model.dropout_rate = 0.3
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 0.003
  config.optimizer.weight_decay = 0.0001
  config.optimizer.schedule = "onecycle"
  config.optimizer.warmup_epochs = 0.2  # onecycle: fraction of training spent warming up.
  return config
