"""viz, predict and load_run for 1-D and 3-D runs: class activation maps, slices and
traces, and .npy examples of the run's input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import cnnjax
from cnnjax import config as config_lib
from cnnjax import models
from cnnjax.errors import DataError
from cnnjax.runs.reader import read_run
from cnnjax.train import steps
from cnnjax.viz import report
from cnnjax.viz.cam import class_activation_maps
from helpers import ROOT, write_ramps

PNG = b"\x89PNG\r\n\x1a\n"
FCN = dict(conv_features=(8, 16, 8), kernel_sizes=(8, 5, 3), pool_size=1, batch_norm=True,
           head="global_avg")


def _forward(model_config, shape, examples=3):
  model = models.build(model_config, 2, shape)
  variables = model.init(jax.random.key(0), jnp.zeros((1, *shape)))
  variables = {k: v for k, v in variables.items() if k != "features"}  # As a run saves them.
  x = jax.random.normal(jax.random.key(1), (examples, *shape))
  logits, features = steps.forward(model.apply, variables, x, mean=0.0, std=1.0, capture=True)
  return variables, np.asarray(logits), {k: np.asarray(v) for k, v in features.items()}


def test_the_mean_over_time_of_an_fcns_cam_is_its_class_score_minus_the_bias():
  variables, logits, features = _forward(models.config("cnn", **FCN), (30, 1))
  kernel = np.asarray(variables["params"]["classifier"]["kernel"])
  bias = np.asarray(variables["params"]["classifier"]["bias"])
  for i in range(3):
    cam, why = class_activation_maps(variables["params"], {k: v[i] for k, v in features.items()},
                                     logits[i])
    assert why == "" and cam.shape == (30, 2)
    assert np.allclose(cam, features["relu2"][i] @ kernel, atol=1e-5)  # The last block's map.
    assert np.allclose(cam.mean(axis=0), logits[i] - bias, atol=1e-5)


@pytest.mark.parametrize("fields", [{"head": "flatten"}, {"dense_features": (8,)}])
def test_a_network_without_global_average_pooling_into_its_classifier_has_no_cam(fields):
  variables, logits, features = _forward(models.config("cnn", **{**FCN, **fields}), (30, 1))
  cam, why = class_activation_maps(variables["params"], {k: v[0] for k, v in features.items()},
                                   logits[0])
  assert cam is None and "need global average pooling straight into the classifier" in why


@pytest.fixture(scope="module")
def runs(tiny_data_dir, tmp_path_factory):
  """A 1-D FCN on ramps; 3-D CNNs on digits3d volumes, with and without global pooling."""
  root = tmp_path_factory.mktemp("rank_runs")
  write_ramps(root / "ucr")
  one_d = config_lib.load(str(ROOT / "configs" / "ucr_fcn.py") + ":Toy", {
      "data.dir": str(root / "ucr"), "num_epochs": 20, "eval_every_epochs": 10,
      "model.conv_features": (8, 16, 8), "optimizer.learning_rate": 0.01})
  cnnjax.train_and_evaluate(one_d, root / "fcn")
  for name, head in (("cnn3d", "global_avg"), ("flat3d", "flatten")):
    config = config_lib.load(str(ROOT / "configs" / "digits3d.py"), {
        "data.dir": str(tiny_data_dir), "data.num_classes": 4, "data.size": 8,
        "data.validation_examples": 32, "num_epochs": 2, "batch_size": 32, "cpu_devices": 0,
        "model.conv_features": (4, 8), "model.head": head})
    cnnjax.train_and_evaluate(config, root / name)
  return root


def _pictures(written):
  for path in written:
    assert path.read_bytes().startswith(PNG) and Image.open(path).size[0] > 100, path
  return sorted(p.name for p in written)


def _with_mistakes(run_dir, names):
  summary = read_run(run_dir).summary
  return sorted(names + (["mistakes.png"] if summary["test_accuracy"] < 1 else []))


@pytest.mark.integration  # Trains runs.
def test_viz_of_a_1d_run_draws_curves_traces_and_cams(runs, tmp_path):
  said = []
  written = report.visualize(runs / "fcn", tmp_path, log=said.append)
  assert _pictures(written) == _with_mistakes(runs / "fcn", [
      "confusion.png", "curves.png", "examples.png", "feature_maps.png", "filters.png"])
  assert said == []


@pytest.mark.integration
def test_viz_of_3d_runs_with_and_without_global_pooling(runs, tmp_path):
  said = []
  written = report.visualize(runs / "cnn3d", tmp_path / "gap", index=2, log=said.append)
  expected = ["confusion.png", "curves.png", "examples.png", "feature_maps.png", "filters.png"]
  assert _pictures(written) == _with_mistakes(runs / "cnn3d", expected) and said == []
  written = report.visualize(runs / "flat3d", tmp_path / "flat", log=said.append)
  assert _pictures(written) == _with_mistakes(runs / "flat3d", expected)
  assert said == ["cnn: no class activation maps: its classifier does not read the global "
                  "average of a feature map (class activation maps need global average pooling "
                  "straight into the classifier, e.g. config.model.head='global_avg' and no "
                  "dense_features)"]


@pytest.mark.integration
def test_predict_takes_npy_examples_of_the_runs_input_and_names_both_shapes_otherwise(
    runs, tmp_path):
  run = cnnjax.load_run(runs / "cnn3d")
  test = report._whole_dataset(run).test_images
  assert run.input_shape == (8, 8, 8, 1) and run.input_dtype == "uint8"
  np.save(tmp_path / "one.npy", test[0, ..., 0])  # The channel axis of 1 may be left out.
  np.save(tmp_path / "batch.npy", test[1:4])
  results = report.predict_files(runs / "cnn3d", [tmp_path / "one.npy", tmp_path / "batch.npy"],
                                 top_k=4)
  expected = run.predict(test[:4])
  assert [r.get("index") for r in results] == [None, 0, 1, 2]
  for r, p in zip(results, expected):
    assert [t["class"] for t in r["top"]] == list(np.argsort(-p))
    assert [t["probability"] for t in r["top"]] == pytest.approx(sorted(p, reverse=True), abs=1e-6)
  np.save(tmp_path / "flat.npy", test[0, 0])
  with pytest.raises(DataError, match=r"flat.npy: an array of shape \(8, 8, 1\) is neither one "
                     r"example of the run's input shape \(8, 8, 8, 1\) nor a batch of them "
                     r"\(N, 8, 8, 8, 1\)"):
    report.predict_files(runs / "cnn3d", [tmp_path / "flat.npy"])
  np.save(tmp_path / "float.npy", test[0] / 255.0)
  with pytest.raises(DataError, match=r"float.npy: the run trained on uint8 values 0..255; "
                     r"this array holds float64 values"):
    report.predict_files(runs / "cnn3d", [tmp_path / "float.npy"])
  series = cnnjax.load_run(runs / "fcn")
  assert series.input_dtype == "float32"
  np.save(tmp_path / "series.npy", np.linspace(-1, 1, 30))
  [up] = report.predict_files(runs / "fcn", [tmp_path / "series.npy"], top_k=1)
  assert up["top"][0]["class"] == 0  # 'up', the first of the set's @classLabel.
