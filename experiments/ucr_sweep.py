"""The FCN on four small UCR/UEA sets, three seeds each: the README's table (OSULeaf,
200 series of 427 steps, takes most of an hour on a 2-core CPU; add it on a bigger machine).

  cnnjax sweep experiments/ucr_sweep.py --workers 2 --config.data.dir=DIR   # DIR holds NAME/NAME_TRAIN.ts, ...
  cnnjax exp show runs/ucr_sweep --aggregate seed \
      --columns data.name,n,test_accuracy --md

Published FCN accuracies (Fawaz et al. 2019): GunPoint 100.0, ItalyPowerDemand 96.3,
ArrowHead 84.3, OSULeaf 97.9; BasicMotions is solved (100%) by deep 1-D CNNs.
"""
from cnnjax.exp import hyper

BASE = "configs/ucr_fcn.py"
SETS = ["GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions"]


def get_points():
  return hyper.product([hyper.sweep("data.name", SETS), hyper.sweep("seed", [0, 1, 2])])
