"""The FCN trained for 1000 epochs on the two sets where 300 epochs
(experiments/ucr_sweep.py) stay below the published FCN accuracy (Fawaz et al. 2019
train for 2000).

  cnnjax sweep experiments/ucr_long.py --workers 2 --set data.dir=../shared/data/ucr
"""
from cnnjax.exp import hyper

BASE = "configs/ucr_fcn.py"


def get_points():
  return hyper.product([hyper.sweep("data.name", ["ArrowHead", "ItalyPowerDemand"]),
                        hyper.sweep("seed", [0, 1, 2]),
                        hyper.fixed("num_epochs", 1000), hyper.fixed("eval_every_epochs", 100),
                        hyper.fixed("checkpoint.every_epochs", 500)])
