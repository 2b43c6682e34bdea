"""cnnjax: config-driven convolutional networks in JAX/Flax.

    import cnnjax
    config = cnnjax.load_config("configs/mnist_talk.py", {"model.conv_features": (9, 16)})
    summary = cnnjax.train_and_evaluate(config, "runs/talk9")
"""
from cnnjax.config import base_config, load as load_config, validate as validate_config


def train_and_evaluate(config, workdir):
  """Trains `config` in run directory `workdir` (resuming it) and returns summary.json's dict."""
  from cnnjax.train.loop import train_and_evaluate as run  # Imports JAX only when used.
  return run(config, workdir)


__all__ = ["base_config", "load_config", "validate_config", "train_and_evaluate"]
