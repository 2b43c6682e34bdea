"""Volumetric digits (data.source="digits3d": MNIST digits as slabs rotated in 3-D, in a
16^3 cube): a 3-D CNN, and with the argument `2d` the 2-D baseline on the same volumes,
each projected along the slab's axis by its maximum voxel (data.project_axis).

  cnnjax train --config configs/digits3d.py --workdir runs/digits3d
  cnnjax train --config configs/digits3d.py:2d --workdir runs/digits3d_2d
  cnnjax train --config configs/digits3d.py --workdir runs/d3_180 --config.data.max_rotation=180

The MNIST IDX files are found as for configs/mnist.py (--config.data.dir=DIR or
$CNNJAX_DATA_DIR); the volumes are built once into the data cache.
"""
from cnnjax import data
from cnnjax.config import base_config


# The 2-D baseline: each volume's maximum projection along the slab's axis (the digit face
# on before its rotation), and the 2-D network chosen on validation (a 2-D step costs a
# fraction of a 3-D one: wider, and more epochs, still in less time).
TWO_D = {"data.project_axis": 0, "model.conv_features": (32, 64, 128), "num_epochs": 15}


def get_config(network: str = "3d"):
  config = base_config()
  config.num_epochs = 3
  config.cpu_devices = 2
  config.batch_size = 128
  config.data = data.config("digits3d", max_rotation=90.0)
  config.data.validation_examples = 5000  # Held out of the 60,000: selection and curves.
  config.data.mean = 0.03
  config.data.std = 0.12
  config.model.conv_features = (8, 16, 32)
  config.model.kernel_size = 3
  config.model.pool_size = 2
  config.model.batch_norm = True
  config.model.pool_first = True
  config.model.head = "global_avg"  # Into the classifier: class activation maps in viz.
  if network == "2d":
    config.update_from_flattened_dict(TWO_D)
  elif network != "3d":
    raise ValueError(f"configs/digits3d.py takes '3d' or '2d', got {network!r}")
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 0.01
  config.optimizer.weight_decay = 0.0001
  config.optimizer.schedule = "onecycle"
  config.optimizer.warmup_epochs = 0.2
  config.checkpoint.select = "last"
  return config
