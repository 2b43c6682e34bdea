"""Your own images: a folder holding train/<class>/*.png|jpg and test/<class>/*, resized to
64x64 RGB; the CNN of configs/mnist.py with a third conv block, random shifts, AdamW.
Class names come from the folder names and are recorded in summary.json.

  cnnjax train --config configs/image_folder.py --workdir runs/pets --config.data.dir=DIR
"""
from cnnjax import data
from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.num_epochs = 20
  config.batch_size = 64
  config.data = data.config("folder", image_size=(64, 64), channels=3)
  config.data.num_classes = 0  # As many as the training folder has.
  config.data.mean = 0.5
  config.data.std = 0.25
  config.data.validation_examples = 0  # Set it (e.g. a tenth of the images) to select on.
  config.data.augment_shift = 4
  config.max_batch_fraction = 0.25  # Small folders still get several steps per epoch.
  config.model.conv_features = (32, 64, 128)
  config.model.dense_features = (128,)
  config.model.batch_norm = True
  config.model.pool_first = True
  config.model.dropout_rate = 0.2
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 0.003
  config.optimizer.weight_decay = 0.0001
  config.optimizer.schedule = "onecycle"
  config.optimizer.warmup_epochs = 0.2
  return config
