"""A Flax NNX model is a model like a Linen one: its constructor's arguments are its
fields, and it goes through the same train step, device equality, checkpoints, resume,
eval, predict and viz. The model is the README's mylab/nnx_nets.py (BatchNorm, dropout)."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import cli, models
from cnnjax import config as config_lib
from cnnjax.errors import ConfigError
from cnnjax.loaded import load_run
from cnnjax.models import bridge
from cnnjax.train import loop, parallel
from helpers import NUM_DEVICES, ROOT, assert_same_run, synthetic_digits, train_steps

TINY = str(ROOT / "configs" / "tiny.py")
# tiny.py's training of the README's NNX WideCNN (its Linen fields give way to the model's).
NNX = {"model.name": "mylab.nnx_nets:WideCNN", "model.width": 6, "model.dropout_rate": 0.25}


def test_an_nnx_model_has_its_constructor_fields_and_the_linen_twin_parameters(mylab):
  config = config_lib.load(TINY, NNX)
  config_lib.validate(config)
  assert dict(config.model) == {"name": "mylab.nnx_nets:WideCNN", "dtype": "float32",
                                "width": 6, "blocks": 2, "dropout_rate": 0.25}
  model = models.build(config.model, 4, (12, 12, 1), parallel.AXIS)
  assert isinstance(model, bridge.Bridged) and model.axis_name == parallel.AXIS
  variables = model.init(jax.random.key(0), jnp.zeros((2, 12, 12, 1)))
  # The README's Linen WideCNN, the same network: conv 1->6 and 6->12 (no bias),
  # BatchNorm scale and bias of each, dense 12->4.
  assert models.param_count(variables["params"]) == 54 + 648 + 2 * 6 + 2 * 12 + 52
  assert jax.tree.map(np.shape, variables["batch_stats"]) == {
      "norms": {0: {"mean": (6,), "var": (6,)}, 1: {"mean": (12,), "var": (12,)}}}
  assert jax.tree.map(np.shape, variables["params"]["convs"]) == {
      0: {"kernel": (3, 3, 1, 6)}, 1: {"kernel": (3, 3, 6, 12)}}
  with pytest.raises(ConfigError, match=r"config\.model\.pool_size: .*'mylab\.nnx_nets:WideCNN'"
                                        r".*blocks, dropout_rate, width"):
    config_lib.load(TINY, {**NNX, "model.pool_size": 2})


def test_the_nnx_talk_cnn_is_the_linen_talk_cnn():
  """configs/mnist_talk.py:nnx: the same layers, and given the Linen CNN's parameters the
  same logits."""
  linen = models.build(config_lib.load(str(ROOT / "configs" / "mnist_talk.py")).model, 10, (28, 28, 1))
  nnx_model = models.build(config_lib.load(str(ROOT / "configs" / "mnist_talk.py:nnx")).model,
                           10, (28, 28, 1))
  x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  params = linen.init(jax.random.key(0), x)["params"]
  assert models.param_count(params) == 9098  # 80 + 1,168 + 7,850
  assert (jax.tree.map(np.shape, nnx_model.init(jax.random.key(0), x)["params"])
          == jax.tree.map(np.shape, params))
  np.testing.assert_allclose(nnx_model.apply({"params": params}, x),
                             linen.apply({"params": params}, x), rtol=1e-5, atol=1e-5)


def test_nnx_dropout_masks_differ_per_example_yet_not_with_the_split():
  from flax import nnx
  layer = bridge.GlobalDropout(0.5, rngs=nnx.Rngs(dropout=0))
  layer.axis_name = parallel.AXIS
  x = np.ones((NUM_DEVICES, 2, 64), np.float32)

  def run(xs, n):
    apply = lambda v: layer(v, deterministic=False, rngs=jax.random.key(3))
    return jax.pmap(apply, axis_name=parallel.AXIS, devices=jax.local_devices()[:n])(xs)
  eight = np.asarray(run(x, NUM_DEVICES)).reshape(16, 64)
  one = np.asarray(run(x.reshape(1, 16, 64), 1)).reshape(16, 64)
  np.testing.assert_array_equal(eight, one)
  assert len({row.tobytes() for row in eight}) == 16  # Every example has its own mask.
  assert set(np.unique(eight)) == {0.0, 2.0}


def test_an_nnx_model_on_eight_devices_equals_one_device(mylab):
  """nnx.BatchNorm over the global batch and nnx.Dropout drawn per example, as for Linen."""
  config = config_lib.load(TINY, NNX)
  images, labels = synthetic_digits(160, seed=5)
  batches = [{"images": images[i:i + 16, ..., None], "labels": labels[i:i + 16].astype(np.int32)}
             for i in range(0, 160, 16)]
  results = [train_steps(config, mode, n, batches, 4, (12, 12, 1))
             for mode, n in (("pmap", 1), ("pmap", NUM_DEVICES), ("shard_map", NUM_DEVICES))]
  for other in results[1:]:
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(results[0][:2]),
                                                            jax.tree.leaves(other[:2])))
    print(f"NNX WideCNN: max |param - 1 device| after 10 steps: {diff:.3g}")
    assert diff <= 3e-5  # The Linen models' tolerance (tests/test_train.py).
    np.testing.assert_allclose(results[0][2].compute()["loss"], other[2].compute()["loss"], rtol=1e-5)
  assert not np.allclose(jax.tree.leaves(results[0][1])[0], 0)  # BatchNorm statistics moved.
  config.model.dropout_rate = 0.0  # Dropout was on: without it the run differs.
  without = train_steps(config, "pmap", 1, batches, 4, (12, 12, 1))
  assert max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(results[0][0]),
                                                          jax.tree.leaves(without[0]))) > 1e-3


BAD_NETS = textwrap.dedent('''
    import math

    from flax import nnx


    class NoRngs(nnx.Module):
      def __init__(self, num_classes: int, width: int = 4):
        self.width = width


    class NeedsDepth(nnx.Module):
      def __init__(self, num_classes: int, depth: int, *, rngs: nnx.Rngs):
        self.depth = depth


    class Flat(nnx.Module):  # Returns the logits of all examples in one row.
      def __init__(self, num_classes: int, input_shape, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(math.prod(input_shape), num_classes, rngs=rngs)

      def __call__(self, x):
        return self.linear(x.reshape(x.shape[0], -1)).reshape(-1)


    class Plain:
      def __init__(self, num_classes: int):
        self.num_classes = num_classes
    ''')


@pytest.mark.parametrize("name, message", [
    ("NoRngs", "config.model.name: badnets:NoRngs: an NNX module's constructor takes `rngs` "
               "(the nnx.Rngs its layers draw their parameters from); NoRngs.__init__ takes none"),
    ("NeedsDepth", "config.model.name: badnets.NeedsDepth's argument 'depth' has no default: "
                   "give it one (it is a config field)"),
    ("Flat", "config.model.name: badnets:Flat returns an array of shape (8,) for 2 examples of "
             "shape (12, 12, 1): a model returns (batch, classes) logits, here (2, 4)"),
    ("Plain", "config.model.name: badnets:Plain is neither a Linen module (flax.linen.Module) "
              "nor an NNX module (flax.nnx.Module)"),
])
def test_a_bad_nnx_model_is_one_line_naming_it_and_what_it_lacks(name, message, tiny_data_dir,
                                                                  tmp_path, monkeypatch, capsys):
  (tmp_path / "badnets.py").write_text(BAD_NETS)
  monkeypatch.syspath_prepend(str(tmp_path))
  workdir = tmp_path / "run"
  code = cli.main(["train", "--config", TINY, "--workdir", str(workdir),
                   f"--config.data.dir={tiny_data_dir}", f"--config.model.name=badnets:{name}"])
  sys.modules.pop("badnets", None)
  err = capsys.readouterr().err
  assert code == 2
  assert err == f"cnnjax train: error: {message}\n"
  # Nothing written to the run (a model that fails on the data's shape finds the lock file
  # of the run directory taken, and leaves it free).
  assert not workdir.exists() or [p.name for p in workdir.iterdir()] == [".lock"]


@pytest.mark.integration  # Trains runs, in processes of their own too.
def test_an_nnx_run_resumes_after_kill_9_bit_identically_and_evaluates_predicts_and_draws(
    mylab, tiny_data_dir, tmp_path, capsys):
  overrides = {**NNX, "data.dir": str(tiny_data_dir), "num_epochs": 3}
  reference = tmp_path / "reference"
  summary = loop.train_and_evaluate(config_lib.load(TINY, overrides), reference)
  workdir = tmp_path / "killed"
  command = [sys.executable, "-m", "cnnjax", "train", "--config", TINY, "--workdir", str(workdir),
             *[f"--config.{k}={v}" for k, v in overrides.items()]]
  env = dict(os.environ, PYTHONPATH=f"{mylab}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
  for pause in ("step:5", "eval:2"):
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(env, CNNJAX_PAUSE_AT=pause))
    for line in proc.stderr:
      if f"paused at {pause}" in line:
        break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
  assert finished.returncode == 0, finished.stderr
  assert_same_run(workdir, reference, step=48)
  capsys.readouterr()

  assert cli.main(["eval", str(reference)]) == 0
  assert f"accuracy {summary['test_accuracy']:.4f}" in capsys.readouterr().out
  images, _ = synthetic_digits(5, seed=11)
  files = []
  for i, image in enumerate(images):
    files.append(str(tmp_path / f"example{i}.npy"))
    np.save(files[-1], image[..., None])
  assert cli.main(["predict", str(reference), *files, "--json"]) == 0
  predicted = [r["top"][0]["class"] for r in json.loads(capsys.readouterr().out)]
  run = load_run(reference)
  assert predicted == run.predict(images[..., None]).argmax(axis=1).tolist()
  assert cli.main(["viz", str(reference)]) == 0
  drawn = {line.rsplit("/", 1)[-1] for line in capsys.readouterr().out.split()}
  assert {"filters.png", "feature_maps.png"} <= drawn
