"""The 1-D ResNet of Wang et al. (2017) on the small UCR/UEA sets of ../shared/data/ucr
(OSULeaf, 200 series of 427 steps, takes too long on a 2-core CPU), three seeds each.

  cnnjax sweep experiments/ucr_resnet.py --workers 2 --set data.dir=../shared/data/ucr
  cnnjax exp show runs/ucr_resnet --columns run,test_accuracy,best_test_accuracy --md

Published ResNet accuracies (Fawaz et al. 2019): GunPoint 99.1, ItalyPowerDemand 96.2,
ArrowHead 83.8.
"""
from cnnjax.exp import hyper

BASE = "configs/ucr_resnet.py"
SETS = ["GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions"]


def get_points():
  return hyper.product([hyper.sweep("data.name", SETS), hyper.sweep("seed", [0, 1, 2])])
