"""The default MNIST model: two conv blocks (conv, max pool, BatchNorm, ReLU), a hidden
dense layer with dropout, random shifts of up to 2 pixels, label smoothing, AdamW with a
one-cycle schedule over 15 epochs on 55,000 training images; 5,000 are held out as a validation split for comparing settings. On a CPU it splits each batch over 2 simulated devices,
which keeps 2 cores busy (same results as one device, to float rounding).

  cnnjax train --config configs/mnist.py --workdir runs/base
"""
from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.num_epochs = 15
  config.cpu_devices = 2
  config.batch_size = 128
  config.data.validation_examples = 5000  # Held out of the 60,000: selection and curves.
  config.label_smoothing = 0.1
  config.data.augment_shift = 2
  config.model.conv_features = (32, 64)
  config.model.dense_features = (128,)
  config.model.batch_norm = True
  config.model.pool_first = True  # BatchNorm and ReLU on the pooled maps (a quarter of them).
  config.model.dropout_rate = 0.1
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 0.003
  config.optimizer.weight_decay = 0.0001
  config.optimizer.schedule = "onecycle"
  config.optimizer.warmup_epochs = 0.2  # onecycle: fraction of training spent warming up.
  # The one-cycle schedule anneals to zero, so the last epoch is the model to deliver; the
  # validation accuracy of its epochs differs by a few of the 5,000 images, too little to
  # choose an earlier epoch on.
  config.checkpoint.select = "last"
  return config
