"""The FCN on the UCR/UEA sets of ../shared/data/ucr, three seeds each: the README's table.

  cnnjax sweep experiments/ucr_sweep.py --workers 2 --set data.dir=../shared/data/ucr
  cnnjax exp show runs/ucr_sweep --columns run,test_accuracy,best_test_accuracy --md

Published FCN accuracies (Fawaz et al. 2019): GunPoint 100.0, ItalyPowerDemand 96.3,
ArrowHead 84.3, OSULeaf 97.9; BasicMotions is solved (100%) by deep 1-D CNNs.
"""
from cnnjax.exp import hyper

BASE = "configs/ucr_fcn.py"
SETS = ["OSULeaf", "GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions"]


def get_points():
  return hyper.product([hyper.sweep("data.name", SETS), hyper.sweep("seed", [0, 1, 2])])
