"""Helpers the tests (and benchmarks/fault_soak.py) share: paths, synthetic IDX data,
experiment files and the sweep command, a held run directory, and what two runs must have in common to be the
same run. Fixtures live in conftest.py."""
import contextlib
import gzip
import os
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NUM_DEVICES = 8
# CI installs every extra: its tests of Ray, SLURM and DVC fail, not skip, without them.
EXTRAS_REQUIRED = os.environ.get("CNNJAX_TEST_EXTRAS") == "required"


def readme_file(name: str) -> str:
  """The README's example file `name` (the Python block whose first line is `# name`)."""
  blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
  return next(b for b in blocks if b.startswith(f"# {name}\n"))


def require(available: bool, why: str) -> None:
  """Skips the test without an optional engine, or fails under CNNJAX_TEST_EXTRAS=required."""
  if not available:
    import pytest
    (pytest.fail if EXTRAS_REQUIRED else pytest.skip)(why)


TS_HEADER = ("# a comment\n@problemName Toy\n@timeStamps false\n@univariate {uni}\n"
             "@classLabel true up down\n@data\n")


def write_ts(path: Path, body: str, uni: str = "true") -> Path:
  """A UCR/UEA .ts file of the classes 'up' and 'down' holding `body`'s lines."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(TS_HEADER.format(uni=uni) + body)
  return path


def write_ramps(folder: Path, train: int = 48, test: int = 20, length: int = 30) -> Path:
  """The UCR-layout set 'Toy' in `folder`: rising ('up') or falling ('down') noisy ramps."""
  rng = np.random.default_rng(1)
  for split, n in (("TRAIN", train), ("TEST", test)):
    lines = []
    for _ in range(n):
      label = rng.choice(["up", "down"])
      ramp = np.linspace(-1, 1, length) * (1 if label == "up" else -1) + rng.normal(0, 0.3, length)
      lines.append(",".join(f"{v:.4f}" for v in ramp) + f":{label}")
    write_ts(folder / "Toy" / f"Toy_{split}.ts", "\n".join(lines) + "\n")
  return folder


def write_idx(path: Path, array: np.ndarray) -> Path:
  """Writes a uint8 array as an IDX file, gzipped when `path` ends in .gz."""
  raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
  raw += b"".join(struct.pack(">I", d) for d in array.shape) + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
  return path


def synthetic_digits(n: int, seed: int, size: int = 12, classes: int = 4):
  """Learnable images: class k is a bright horizontal bar in row band k, plus noise."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, n).astype(np.uint8)
  images = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
  band = size // classes
  for i, k in enumerate(labels):
    images[i, k * band:(k + 1) * band, 1:-1] = 220
  return images, labels


def write_idx_folder(folder: Path, train: int = 288, test: int = 60, gz: bool = True) -> Path:
  folder.mkdir(parents=True, exist_ok=True)
  ext = ".gz" if gz else ""
  for split, n, seed in (("train", train, 0), ("t10k", test, 1)):
    images, labels = synthetic_digits(n, seed)
    write_idx(folder / f"{split}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", labels)
  return folder


def train_steps(config, mode: str, n: int, batches, num_classes: int, input_shape):
  """(params, batch_stats, metrics) after training `config`'s model from seed 0 on
  `batches` with `mode` ("pmap", "shard_map") on `n` devices."""
  import jax

  from cnnjax import models
  from cnnjax.train import parallel, steps
  from cnnjax.train.optim import create_optimizer
  from cnnjax.train.state import create_train_state
  dmap = parallel.DeviceMap(mode, parallel.select_devices(n), config, num_classes)
  model = models.build(config.model, num_classes, input_shape, parallel.AXIS)
  tx, _ = create_optimizer(config.optimizer, steps_per_epoch=10, num_epochs=1)
  rstate = dmap.replicate(create_train_state(model, input_shape, tx, 0))
  rmetrics = dmap.replicate(steps.TrainMetrics.empty())
  for batch in batches:
    rstate, rmetrics = dmap.train_step(rstate, rmetrics, dmap.split(batch))
  return jax.device_get(dmap.unreplicate((rstate.params, rstate.batch_stats, rmetrics)))


def comparable_metrics(workdir: Path) -> list[dict]:
  """A run's metrics.jsonl records without their timing fields."""
  from cnnjax.runs.metrics import read_metrics, without_timing
  return without_timing(read_metrics(workdir / "metrics.jsonl"))


def latest_checkpoint(workdir: Path):
  """(step, arrays) of a run's latest checkpoint, read as every reader reads it."""
  from cnnjax.runs.checkpoints import Checkpoints
  return Checkpoints.reader(workdir).restore_arrays("latest")


def assert_same_run(workdir: Path, reference: Path, step: int) -> None:
  """The run in `workdir` ended where `reference` did: the same metrics records (timing
  aside) and, bit for bit, the same latest checkpoint, of `step`."""
  import jax
  import numpy as np
  assert comparable_metrics(workdir) == comparable_metrics(reference)
  (step_a, a), (step_b, b) = latest_checkpoint(workdir), latest_checkpoint(reference)
  assert step_a == step_b == step
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@contextlib.contextmanager
def held(workdir: Path):
  """`workdir`'s lock, held by this process for the block (as a training process holds it)."""
  from cnnjax.runs import records
  lock = records.Lock(workdir)
  lock.acquire()
  try:
    yield lock
  finally:
    lock.release()


# Sweep points of configs/tiny.py: two that train and one that fails once its data is
# loaded (too much pooling for 12x12 images).
THREE_POINTS = ('hyper.sweep("model.conv_features", [(4, 8), (6, 8)]) + '
                'hyper.sweep("model.conv_features", [(4, 8, 8, 8)])')


def write_experiment(path: Path, data_dir: Path, points: str) -> Path:
  """An experiment file: configs/tiny.py for one epoch on `data_dir`, and the points the
  Python expression `points` gives (it may use `hyper`)."""
  path.write_text(textwrap.dedent(f"""
      from cnnjax import config as config_lib
      from cnnjax.exp import hyper

      def get_config():
        return config_lib.load({str(ROOT / "configs" / "tiny.py")!r},
                               {{"data.dir": {str(data_dir)!r}, "num_epochs": 1}})

      def get_points():
        return {points}
  """))
  return path


def sweep_command(experiment, root, *args, env=None, timeout=600, **kwargs):
  """`cnnjax sweep EXPERIMENT --root ROOT ARGS` in a process of its own, to its end."""
  return subprocess.run([sys.executable, "-m", "cnnjax", "sweep", str(experiment), "--root",
                         str(root), *args], capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, **(env or {})), **kwargs)
