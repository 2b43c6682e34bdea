"""cnnjax: config-driven convolutional networks in JAX/Flax.

    import cnnjax
    config = cnnjax.load_config("configs/mnist_talk.py", {"model.conv_features": (9, 16)})
    summary = cnnjax.train_and_evaluate(config, "runs/talk9")
    table = cnnjax.sweep(config, [{"optimizer.learning_rate": lr} for lr in (0.02, 0.1)], "runs/lr")
    print(table.to_markdown())
"""
from cnnjax.config import base_config, load as load_config, validate as validate_config


def train_and_evaluate(config, workdir):
  """Trains `config` in run directory `workdir` (resuming it) and returns summary.json's dict."""
  from cnnjax.train.loop import train_and_evaluate as run  # Imports JAX only when used.
  return run(config, workdir)


def sweep(base_config, points, root, workers=1, retry_failed=False, launcher="local",
          halving=None, **options):
  """Trains each point (a dict of overrides) of `base_config` in `root/<point name>`,
  skipping finished points, and returns the results table (`.rows`, `.to_markdown()`).
  `halving` (`cnnjax.exp.hyper.halving(...)`) trains only what successive halving promotes.
  `launcher`: "local" (`workers` points at once), "ray" or "slurm", with the options cpu,
  gpu, max_parallel, partition and time (minutes) of `cnnjax sweep`. Ray must be
  connected before JAX is imported: `cnnjax.exp.launchers.ray_tasks.connect()` first."""
  from pathlib import Path

  from cnnjax.exp import launchers
  from cnnjax.exp.sweep import run_sweep
  runner = launchers.make(launcher, Path(root), dict(options, workers=workers))
  return run_sweep(base_config, points, root, runner, retry_failed=retry_failed, halving=halving)


def load_run(path, checkpoint="selected"):
  """A trained run's config, model and parameters; `.predict(images)` gives probabilities."""
  from cnnjax.loaded import load_run as load
  return load(path, checkpoint)


def show(*roots, all_params=False):
  """The `cnnjax exp show` table of every run under `roots` (default runs/)."""
  from cnnjax.exp.table import show as show_table
  return show_table(roots or ["runs"], all_params=all_params)


__all__ = ["base_config", "load_config", "validate_config", "train_and_evaluate", "sweep", "show", "load_run"]
