"""A model or a data source is one file, inside the package or outside it: its fields are
its config fields. The files outside are the README's own examples."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import config as config_lib
from cnnjax import data, fields, models
from cnnjax.errors import ConfigError
from helpers import ROOT, synthetic_digits

TINY = str(ROOT / "configs" / "tiny.py")


def test_a_model_outside_the_package_has_its_own_fields(mylab):
  config = config_lib.load(TINY, {"model.name": "mylab.nets:WideCNN", "model.width": "6"})
  config_lib.validate(config)
  assert dict(config.model) == {"name": "mylab.nets:WideCNN", "dtype": "float32", "width": 6,
                                "blocks": 2}
  model = models.build(config.model, 4, (12, 12, 1), "batch")
  assert (model.width, model.num_classes, model.axis_name) == (6, 4, "batch")
  variables = model.init(jax.random.key(0), jnp.zeros((2, 12, 12, 1)))
  # conv 1->6 and 6->12 (no bias), BatchNorm scale and bias of each, dense 12->4.
  assert models.param_count(variables["params"]) == 54 + 648 + 2 * 6 + 2 * 12 + 52
  with pytest.raises(ConfigError, match=r"config\.model\.pool_size: unknown field: model "
                                        r"'mylab\.nets:WideCNN' has blocks, width"):
    config_lib.load(TINY, {"model.name": "mylab.nets:WideCNN", "model.pool_size": "2"})
  with pytest.raises(ConfigError, match=r"config\.model\.name: cannot import 'mylab\.nets:Narrow'"):
    config_lib.load(TINY, {"model.name": "mylab.nets:Narrow"})


def _npy_folder(folder, train: int, test: int, prefix: str = ""):
  """The four .npy files the README's NpyFolder source reads."""
  folder.mkdir()
  for split, n, seed in (("train", train, 0), ("test", test, 1)):
    images, labels = synthetic_digits(n, seed)
    np.save(folder / f"{prefix}{split}_x.npy", images[..., None])
    np.save(folder / f"{prefix}{split}_y.npy", labels)
  return folder


def test_a_data_source_outside_the_package_has_its_own_fields(mylab, tmp_path):
  folder = _npy_folder(tmp_path / "arrays", train=64, test=24, prefix="my_")
  config = config_lib.load(TINY, {"data.source": "mylab.arrays:NpyFolder", "data.dir": str(folder),
                                  "data.prefix": "my_"})
  config_lib.validate(config)
  assert sorted(set(config.data) - set(data.SHARED)) == ["dir", "prefix"]
  assert config.data.validation_examples == 32  # The shared fields stay those of tiny.py.
  dataset = data.load(config.data, seed=0)
  assert (len(dataset.train_labels), len(dataset.val_labels), len(dataset.test_labels)) == (32, 32, 24)
  with pytest.raises(ConfigError, match=r"config\.data\.download: unknown field: data source "
                                        r"'mylab\.arrays:NpyFolder' has dir, prefix"):
    config_lib.load(TINY, {"data.source": "mylab.arrays:NpyFolder", "data.download": "False"})


@pytest.fixture
def package_files(tmp_path, monkeypatch):
  """A folder that counts as part of cnnjax.models and cnnjax.data, as a file added to
  the package does."""
  monkeypatch.setattr(models, "__path__", [*models.__path__, str(tmp_path)])
  monkeypatch.setattr(data, "__path__", [*data.__path__, str(tmp_path)])
  yield tmp_path
  for module in ("cnnjax.models.tinyconv", "cnnjax.data.ones"):
    sys.modules.pop(module, None)


def test_a_model_and_a_source_added_to_the_package_are_found_by_file_name(package_files):
  (package_files / "tinyconv.py").write_text(textwrap.dedent('''
      import flax.linen as nn

      class Model(nn.Module):
        num_classes: int
        features: int = 3  # Its own field.

        @nn.compact
        def __call__(self, x, train: bool = False):
          x = nn.relu(nn.Conv(self.features, (3, 3))(x))
          return nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))
  '''))
  (package_files / "ones.py").write_text(textwrap.dedent('''
      import dataclasses
      import numpy as np
      from cnnjax import data

      @dataclasses.dataclass(frozen=True)
      class Source:
        examples: int = 40  # Its own field.

        def load(self, num_classes):
          images = np.ones((self.examples, 8, 8, 1), np.uint8)
          labels = (np.arange(self.examples) % 2).astype(np.int32)
          return data.Splits(images, labels, images[:10], labels[:10], location="ones")
  '''))
  assert "tinyconv" in fields.builtin(models) and "ones" in fields.builtin(data)
  config = config_lib.load(TINY, {"model.name": "tinyconv", "model.features": "5",
                                  "data.source": "ones", "data.examples": "50"})
  config_lib.validate(config)
  assert dict(config.model) == {"name": "tinyconv", "dtype": "float32", "features": 5}
  dataset = data.load(config.data)
  assert len(dataset.train_labels) + len(dataset.val_labels) == 50
  with pytest.raises(ConfigError, match=r"config\.model\.dtype: model 'tinyconv' takes no dtype"):
    config_lib.validate(config_lib.load(TINY, {"model.name": "tinyconv", "model.dtype": "bfloat16"}))


@pytest.mark.integration  # Trains a run in processes of its own.
def test_the_readme_model_and_source_train_and_evaluate(mylab, tmp_path):
  folder = _npy_folder(tmp_path / "arrays", train=160, test=40)
  env = dict(os.environ, PYTHONPATH=f"{mylab}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  run = tmp_path / "run"
  train = [sys.executable, "-m", "cnnjax", "train", "--config", TINY, "--workdir", str(run),
           "--config.model.name=mylab.nets:WideCNN", "--config.model.width=8",
           "--config.data.source=mylab.arrays:NpyFolder", f"--config.data.dir={folder}",
           "--config.num_epochs=2"]
  done = subprocess.run(train, capture_output=True, text=True, env=env, timeout=300)
  assert done.returncode == 0, done.stderr
  recorded = json.loads((run / "config.json").read_text())
  assert recorded["model"] == {"name": "mylab.nets:WideCNN", "dtype": "float32", "width": 8,
                               "blocks": 2}
  assert recorded["data"]["source"] == "mylab.arrays:NpyFolder" and "download" not in recorded["data"]
  evaluated = subprocess.run([sys.executable, "-m", "cnnjax", "eval", str(run)],
                             capture_output=True, text=True, env=env, timeout=300)
  assert evaluated.returncode == 0, evaluated.stderr
  assert "examples 40" in evaluated.stdout
