"""MNIST to about 99% test accuracy in seconds on a laptop CPU: the configuration for quick
iterations. benchmarks/time_to_accuracy.py times it to 99% on all 60,000 training images
(--config.data.validation_examples=0).

Two conv blocks of 16 and 32 filters that pool before the ReLU (the same function as
ReLU then pool, cheaper: config.model.pool_first), a hidden dense layer of 128, no
BatchNorm or dropout (two epochs are too short to overfit), AdamW with a one-cycle
schedule over 2 epochs; on a CPU each batch is split over 2 simulated devices, so both
cores of a laptop work.

  cnnjax train --config configs/mnist_fast.py --workdir runs/fast
"""
from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.num_epochs = 2
  config.cpu_devices = 2
  config.batch_size = 128
  config.data.validation_examples = 5000  # Held out of the 60,000: selection and curves.
  config.model.name = "cnn"
  config.model.conv_features = (16, 32)
  config.model.pool_first = True
  config.model.dense_features = (128,)
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 0.003
  config.optimizer.schedule = "onecycle"
  config.optimizer.warmup_epochs = 0.2  # onecycle: fraction of training spent warming up.
  return config
