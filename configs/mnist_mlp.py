"""A plain MLP on MNIST (784-256-128-10): the "regular neural network" baseline the talk
compares CNNs with. Same data, optimizer and run records as the CNN configs.

  cnnjax train --config configs/mnist_mlp.py --workdir runs/mlp
"""
from cnnjax import models
from cnnjax.config import base_config


def get_config():
  config = base_config()
  config.num_epochs = 10
  config.batch_size = 128
  config.data.validation_examples = 5000  # Held out of the 60,000: selection and curves.
  config.model = models.config("mlp", dense_features=(256, 128), dropout_rate=0.2)
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 0.001
  config.optimizer.schedule = "cosine"
  return config
