"""1-D series, 2-D images and 3-D volumes through one model family and one loop."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnnjax
from cnnjax import config as config_lib
from cnnjax import data, models
from cnnjax.data import npz, synthetic, ucr
from cnnjax.errors import ConfigError, DataError
from cnnjax.train import parallel, steps
from cnnjax.train.optim import create_optimizer
from cnnjax.train.state import create_train_state
from helpers import ROOT, write_ramps, write_ts


def _config(name, arg=None, overrides=None):
  spec = str(ROOT / "configs" / name) + (f":{arg}" if arg else "")
  return config_lib.load(spec, overrides)


@pytest.mark.parametrize("name, arg, input_shape, classes, params", [
    ("ucr_fcn.py", "GunPoint", (150, 1), 2, 264_450),      # Wang et al.'s FCN
    ("ucr_resnet.py", "GunPoint", (150, 1), 2, 503_106),   # Wang et al.'s ResNet
    ("ucr_fcn.py", "BasicMotions", (100, 6), 4, 269_828),  # 6 channels, 4 classes
    ("volumes_3d.py", None, (16, 16, 16, 1), 3, 14_451),   # the small 3-D CNN
    ("mnist_talk.py", None, (28, 28, 1), 10, 9_098),       # the same CNN code in 2-D
])
def test_shapes_and_exact_parameter_counts_per_rank(name, arg, input_shape, classes, params):
  model = models.build(_config(name, arg).model, classes, input_shape)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, *input_shape)))
  assert models.param_count(variables["params"]) == params
  assert jax.eval_shape(model.apply, variables, jnp.zeros((3, *input_shape))).shape == (3, classes)


def test_sizes_per_axis_and_errors_name_the_field():
  config = _config("volumes_3d.py", None, {"model.kernel_size": (3, 3, 1), "model.pool_size": (2, 2, 1)})
  model = models.build(config.model, 3, (8, 8, 4, 1))
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 4, 1)))
  assert variables["params"]["conv0"]["kernel"].shape == (3, 3, 1, 1, 16)
  _, feats = model.apply(variables, jnp.zeros((1, 8, 8, 4, 1)), mutable=["features"])
  assert feats["features"]["pool1"][0].shape == (1, 2, 2, 4, 32)
  with pytest.raises(ConfigError, match=r"config\.model\.pool_size: \(2, 2, 1\) gives 3 sizes for 1-D data"):
    models.build(config.model, 3, (100, 1))
  valid = _config("ucr_fcn.py", "GunPoint", {"model.padding": "VALID"})
  with pytest.raises(ConfigError, match=r"config\.model\.kernel_sizes: block 1's kernel 8 .*6 input"):
    models.build(valid.model, 2, (6, 1))
  with pytest.raises(ConfigError, match=r"config\.model\.kernel_sizes: gives 2 sizes for 3 conv blocks"):
    config_lib.validate(_config("ucr_fcn.py", "GunPoint", {"model.kernel_sizes": (8, 5)}))


@pytest.mark.parametrize("name, arg, overrides, shape", [
    ("ucr_fcn.py", "x", {"model.conv_features": (8, 16, 8)}, (40, 2)),
    ("ucr_resnet.py", "x", {"model.conv_features": (8, 8, 16)}, (40, 2)),
    ("configs_tiny", None, {}, (12, 12, 1)),
    ("volumes_3d.py", None, {"model.conv_features": (4, 8)}, (8, 8, 8, 1)),
])
def test_a_few_train_steps_lower_the_loss_in_every_rank(name, arg, overrides, shape):
  config = _config("tiny.py" if name == "configs_tiny" else name, arg, overrides)
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 16).astype(np.int32)
  x = rng.normal(0, 1, (16, *shape)).astype(np.float32) + labels.reshape(-1, *[1] * len(shape))
  if name == "configs_tiny":
    x = np.clip(x * 40 + 100, 0, 255).astype(np.uint8)
  dmap = parallel.DeviceMap("pmap", parallel.select_devices(1), config, 3)
  model = models.build(config.model, 3, shape, parallel.AXIS)
  state = create_train_state(model, shape, create_optimizer(config.optimizer, 5, 1)[0], 0)
  rstate = dmap.replicate(state)
  losses = []
  for _ in range(5):
    rstate, m = dmap.train_step(rstate, dmap.replicate(steps.TrainMetrics.empty()),
                                dmap.split({"images": x, "labels": labels}))
    losses.append(float(dmap.unreplicate(m).compute()["loss"]))
  assert losses[-1] < losses[0], losses




def test_ts_univariate_and_label_order(tmp_path):
  write_ts(tmp_path / "Toy" / "Toy_TRAIN.ts", "1,2,3,4:down\n4,3,2,1:up\n2,2,2,?:up\n")
  write_ts(tmp_path / "Toy" / "Toy_TEST.ts", "0,1,0,1:down\n")
  x, y, tx, ty, names = ucr.load(tmp_path, "Toy", 0, "pad", 0, znorm=False)
  assert names == ("up", "down")  # The @classLabel order, not sorted or first-seen.
  assert tx.shape == (1, 4, 1) and tx[0, :, 0].tolist() == [0, 1, 0, 1]
  assert y.tolist() == [1, 0, 0] and ty.tolist() == [1]
  assert x.shape == (3, 4, 1) and x[:, :, 0].tolist()[0] == [1, 2, 3, 4]
  assert x[2, 3, 0] == 0.0  # Missing value '?'.
  z = ucr.load(tmp_path, "Toy", 0, "pad", 0, znorm=True)[0][0, :, 0]
  assert z.mean() == pytest.approx(0, abs=1e-6) and z.std() == pytest.approx(1, abs=1e-5)


def test_ts_multivariate_unequal_length_pad_and_resample(tmp_path):
  body = "1,2,3:5,6,7:up\n1,2:3,4:down\n"
  write_ts(tmp_path / "Toy" / "Toy_TRAIN.ts", body, uni="false")
  write_ts(tmp_path / "Toy" / "Toy_TEST.ts", "9,9,9,9,9:1,1,1,1,1:up\n", uni="false")
  x, _, tx, _, _ = ucr.load(tmp_path, "Toy", 0, "pad", 0, znorm=False)
  assert x.shape == (2, 5, 3) and tx.shape == (1, 5, 3)  # 2 channels + mask, longest = 5.
  np.testing.assert_array_equal(x[1], [[1, 3, 1], [2, 4, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
  r, _, _, _, _ = ucr.load(tmp_path, "Toy", 0, "resample", 4, znorm=False)
  assert r.shape == (2, 4, 2)
  np.testing.assert_allclose(r[1, :, 0], [1, 4 / 3, 5 / 3, 2], rtol=1e-6)


@pytest.mark.parametrize("body, message", [
    ("1,2,3:up\n1,2,3:4,5,6:up\n", r"Toy_TRAIN\.ts:8: 2 channels, earlier lines have 1"),
    ("1,x,3:up\n", r"Toy_TRAIN\.ts:7: not a number"),
    ("1,2,3:sideways\n", r"Toy_TRAIN\.ts:7: label 'sideways' is not among @classLabel"),
    ("1,2,3:4,5:up\n", r"Toy_TRAIN\.ts:7: channels of one series differ in length"),
])
def test_ts_bad_lines_name_file_and_line(tmp_path, body, message):
  write_ts(tmp_path / "Toy" / "Toy_TRAIN.ts", body)
  write_ts(tmp_path / "Toy" / "Toy_TEST.ts", "1,2,3:up\n")
  with pytest.raises(DataError, match=message):
    ucr.load(tmp_path, "Toy", 0, "pad", 0, znorm=False)
  with pytest.raises(DataError, match=r"UCR/UEA set 'Nope' not found"):
    ucr.load(tmp_path, "Nope", 0, "pad", 0, znorm=False)


def test_npz_volumes_in_medmnist_layout(tmp_path):
  rng = np.random.default_rng(0)
  arrays = {f"{s}_images": rng.integers(0, 255, (n, 6, 6, 6), dtype=np.uint8)
            for s, n in (("train", 10), ("val", 3), ("test", 4))}
  arrays.update({f"{s}_labels": rng.integers(0, 2, (n, 1)) for s, n in (("train", 10), ("val", 3), ("test", 4))})
  np.savez(tmp_path / "organ.npz", **arrays)
  config = _config("volumes_3d.py", None, {"data.source": "npz", "data.name": "organ",
                                            "data.dir": str(tmp_path),
                                            "data.validation_examples": 2})
  dataset = data.load(config.data, config.seed)
  assert dataset.train_images.shape == (8, 6, 6, 6, 1) and dataset.test_labels.shape == (4,)
  assert dataset.val_images.shape == (2, 6, 6, 6, 1)
  np.savez(tmp_path / "broken.npz", train_images=arrays["train_images"])
  with pytest.raises(DataError, match=r"broken\.npz: no 'train_labels' array"):
    npz.load_npz(tmp_path / "broken.npz")
  arrays["test_labels"][0] = -1
  np.savez(tmp_path / "organ.npz", **arrays)
  with pytest.raises(DataError, match=r"organ\.npz: label -1 is outside the \d+ classes"):
    data.load(config.data, config.seed)


def test_synthetic_volumes_are_seeded_and_balanced():
  a, la = synthetic.synthetic_volumes(60, 12, 0.3, seed=4)
  b, lb = synthetic.synthetic_volumes(60, 12, 0.3, seed=4)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(la, lb)
  assert a.shape == (60, 12, 12, 12, 1) and a.dtype == np.uint8
  assert sorted(set(la.tolist())) == [0, 1, 2]
  assert not np.array_equal(a, synthetic.synthetic_volumes(60, 12, 0.3, seed=5)[0])


@pytest.mark.integration  # Trains a run.
def test_a_1d_run_end_to_end_records_class_names(tmp_path):
  write_ramps(tmp_path)
  config = _config("ucr_fcn.py", "Toy", {"data.dir": str(tmp_path), "num_epochs": 20,
                                         "eval_every_epochs": 10, "model.conv_features": (8, 16, 8),
                                         "optimizer.learning_rate": 0.01})
  summary = cnnjax.train_and_evaluate(config, tmp_path / "run")
  assert summary["class_names"] == ["up", "down"] and summary["input_shape"] == [30, 1]
  lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [10, 20]
  assert summary["test_accuracy"] > 0.8
