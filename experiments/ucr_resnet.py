"""The 1-D ResNet of Wang et al. (2017) on small UCR/UEA sets (OSULeaf, 200 series of 427 steps, takes too long on a 2-core CPU), three seeds each.

  cnnjax sweep experiments/ucr_resnet.py --workers 2 --config.data.dir=DIR   # DIR holds NAME/NAME_TRAIN.ts, ...
  cnnjax exp show runs/ucr_resnet --aggregate seed \
      --columns data.name,n,test_accuracy --md

Published ResNet accuracies (Fawaz et al. 2019): GunPoint 99.1, ItalyPowerDemand 96.2,
ArrowHead 83.8.
"""
from cnnjax.exp import hyper

BASE = "configs/ucr_resnet.py"
SETS = ["GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions"]


def get_points():
  return hyper.product([hyper.sweep("data.name", SETS), hyper.sweep("seed", [0, 1, 2])])
