"""A small 3-D CNN for volumes (CT/MRI-like): two conv blocks (3x3x3, BatchNorm, max pool),
global average pooling. By default on the SYNTHETIC noisy 3-D shapes (sphere, cube,
cross; generated from config.data.seed); for a MedMNIST-3D `.npz` file:

  cnnjax train --config configs/volumes_3d.py --workdir runs/organ3d \\
      --config.data.source=npz --config.data.dir=/data/organmnist3d.npz --config.data.num_classes=0
"""
from cnnjax import data
from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.num_epochs = 20
  config.batch_size = 32
  config.data = data.config("synthetic")
  config.data.num_classes = 0
  config.data.validation_examples = 100  # Of the 600 training volumes.
  config.data.mean = 0.3
  config.data.std = 0.3
  config.data.eval_batch_size = 100
  config.model.conv_features = (16, 32)
  config.model.kernel_size = 3
  config.model.pool_size = 2
  config.model.head = "global_avg"
  config.model.batch_norm = True
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 0.003
  config.optimizer.schedule = "cosine"
  return config
