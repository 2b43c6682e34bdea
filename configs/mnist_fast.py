"""MNIST to about 99% test accuracy in seconds on a laptop CPU: the configuration for quick
iterations. benchmarks/time_to_accuracy.py times it to 99% on all 60,000 training images
(--config.data.validation_examples=0).

The talk's two conv blocks of 8 and 16 filters, pooling before BatchNorm and ReLU, which
then work on a quarter of the values (config.model.pool_first), a hidden dense layer of
128, no dropout (two epochs are too short to overfit), AdamW with a one-cycle schedule
over 2 epochs at a high peak rate, which BatchNorm keeps stable. Small blocks run
batch-last on a CPU (config.model.layout), on one device.

  cnnjax train --config configs/mnist_fast.py --workdir runs/fast
"""
from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.num_epochs = 2
  config.cpu_devices = 1
  config.batch_size = 128
  config.data.validation_examples = 5000  # Held out of the 60,000: selection and curves.
  config.model.conv_features = (8, 16)
  config.model.batch_norm = True
  config.model.pool_first = True
  config.model.dense_features = (128,)
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 0.02
  config.optimizer.schedule = "onecycle"
  config.optimizer.warmup_epochs = 0.2  # onecycle: fraction of training spent warming up.
  return config
