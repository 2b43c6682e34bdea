"""The 1-D residual network of Wang et al. (2017) on a UCR/UEA time-series set: three
residual blocks (64, 128, 128 filters) of three convolutions (kernels 8, 5, 3) with
BatchNorm, global average pooling. Data and training as in ucr_fcn.py, whose config
this one starts from; the argument names the set.

  cnnjax train --config configs/ucr_resnet.py:ArrowHead --workdir runs/arrowhead_resnet \\
      --config.data.dir=../shared/data/ucr
"""
from pathlib import Path

from cnnjax import models
from cnnjax.config import load


def get_config(name: str = "GunPoint"):
  config = load(f"{Path(__file__).with_name('ucr_fcn.py')}:{name}")
  config.model = models.config("resnet", conv_features=(64, 128, 128), kernel_sizes=(8, 5, 3))
  return config
