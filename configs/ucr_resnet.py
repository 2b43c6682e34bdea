"""The 1-D residual network of Wang et al. (2017) on a UCR/UEA time-series set: three
residual blocks (64, 128, 128 filters) of three convolutions (kernels 8, 5, 3) with
BatchNorm, global average pooling. The argument names the set (see ucr_fcn.py).

  cnnjax train --config configs/ucr_resnet.py:ArrowHead --workdir runs/arrowhead_resnet \\
      --config.data.dir=../shared/data/ucr
"""
from cnnjax.config import base_config


def get_config(name: str = "GunPoint"):
  config = base_config()
  config.num_epochs = 300
  config.batch_size = 16
  config.eval_every_epochs = 10
  config.data.source = "ucr"
  config.data.name = name
  config.data.num_classes = 0
  config.data.mean = 0.0
  config.data.std = 1.0
  config.data.znorm = True
  config.data.eval_batch_size = 256
  config.model.name = "resnet"
  config.model.conv_features = (64, 128, 128)
  config.model.kernel_sizes = (8, 5, 3)
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 0.001
  config.optimizer.schedule = "cosine"
  config.checkpoint.every_epochs = 50
  config.log_every_seconds = 30.0
  return config
