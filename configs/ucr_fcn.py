"""The fully convolutional network (FCN) of Wang et al. (2017) on a UCR/UEA time-series
set: three conv blocks (128, 256, 128 filters; kernels 8, 5, 3) with BatchNorm and
ReLU, global average pooling; batch size min(16, N_train / 10) as in the paper. The
argument names the set, found under config.data.dir (or $CNNJAX_DATA_DIR) as
NAME/NAME_TRAIN.ts and NAME/NAME_TEST.ts.

  cnnjax train --config configs/ucr_fcn.py:GunPoint --workdir runs/gunpoint_fcn \\
      --config.data.dir=../shared/data/ucr
"""
from cnnjax import data
from cnnjax.config import base_config


def get_config(name: str = "GunPoint"):
  config = base_config()
  config.num_epochs = 300
  config.batch_size = 16
  config.max_batch_fraction = 0.1  # Batch min(16, N/10), as Wang et al.: 3 on ArrowHead's 36.
  config.pad_batch = True  # Such batches rarely split over the devices: pad and mask.
  config.eval_every_epochs = 10
  config.data = data.config("ucr", name=name, znorm=True)
  config.data.num_classes = 0  # As many as the set's @classLabel lists.
  config.data.mean = 0.0
  config.data.std = 1.0
  config.data.eval_batch_size = 256
  config.model.conv_features = (128, 256, 128)
  config.model.kernel_sizes = (8, 5, 3)
  config.model.pool_size = 1
  config.model.head = "global_avg"
  config.model.batch_norm = True
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 0.001
  config.optimizer.schedule = "cosine"
  config.checkpoint.every_epochs = 50
  # The sets are too small to hold out a validation split: deliver the epoch with the lowest
  # training loss, as Wang et al. (2017) and Fawaz et al. (2019) do.
  config.checkpoint.select = "train_loss"
  config.log_every_seconds = 30.0
  return config
