"""Does a 3-D convolution learn more than a 2-D one from the same volumes? The 3-D CNN of
configs/digits3d.py against its 2-D baseline (configs/digits3d.py:2d, a CNN on each
volume's maximum projection along the slab's axis), with the digits tilted
by up to 45 degrees (the projection still shows the digit) and up to 90 (it may show it
edge-on).

  cnnjax sweep experiments/digits3d.py --seeds 3
  cnnjax exp show runs/digits3d --aggregate seed --md \\
      --columns data.max_rotation,data.project_axis,n,test_accuracy,val_accuracy,wall_seconds
"""
from pathlib import Path

from cnnjax.config import load_module

BASE = "configs/digits3d.py"  # Relative to this file's folder or its parent.
TWO_D = load_module(Path(__file__).parent.parent / BASE, "_digits3d_config").TWO_D


def get_points():
  return [{"data.max_rotation": rotation, **network}
          for rotation in (45.0, 90.0) for network in ({}, TWO_D)]
