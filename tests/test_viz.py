"""`cnnjax viz`, `predict`, `eval` and `cnnjax.load_run` on tiny trained runs."""
import json

import numpy as np
import pytest
from PIL import Image

import cnnjax
from cnnjax import cli
from cnnjax import config as config_lib
from cnnjax.errors import DataError
from cnnjax.viz import images as image_io
from cnnjax.viz import report
from helpers import ROOT

PNG = b"\x89PNG\r\n\x1a\n"
TRAINS = pytest.mark.integration  # Uses the `trained` runs.


@pytest.fixture(scope="module")
def trained(tiny_data_dir, tmp_path_factory):
  root = tmp_path_factory.mktemp("viz_runs")
  for name, overrides in (("cnn", {}), ("mlp", {"model.name": "mlp", "num_epochs": 1})):
    config = config_lib.load(str(ROOT / "configs" / "tiny.py"),
                             {"data.dir": str(tiny_data_dir), **overrides})
    cnnjax.train_and_evaluate(config, root / name)
  return root


def _test_set(tiny_data_dir):
  from cnnjax.data import idx
  return idx.load_folder(tiny_data_dir, 4)[2:]


@TRAINS
def test_viz_writes_every_picture_as_png(trained, tmp_path):
  written = report.visualize(trained / "cnn", tmp_path / "out", index=3, log=lambda *_: None)
  assert sorted(p.name for p in written) == ["confusion.png", "curves.png", "feature_maps.png",
                                             "filters.png", "mistakes.png"]
  for path in written:
    assert path.read_bytes().startswith(PNG)
    assert Image.open(path).size[0] > 100


@TRAINS
def test_mlp_viz_says_it_has_no_filters_and_draws_the_rest(trained, tmp_path):
  said = []
  written = report.visualize(trained / "mlp", tmp_path / "out", log=said.append)
  assert sorted(p.name for p in written) == ["confusion.png", "curves.png", "mistakes.png"]
  assert any("no conv filters" in s for s in said)


@TRAINS
def test_eval_counts_every_test_example_and_saves(trained):
  result = report.evaluate_on(trained / "cnn")
  confusion = np.array(result["confusion"])
  assert confusion.sum() == result["examples"] == 60
  summary = json.loads((trained / "cnn" / "summary.json").read_text())
  assert result["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)
  assert np.allclose(result["per_class_accuracy"], confusion.diagonal() / confusion.sum(axis=1))
  assert json.loads(open(result["saved"]).read())["confusion"] == result["confusion"]


@TRAINS
def test_eval_command_on_another_folder(trained, tmp_path, capsys):
  from helpers import write_idx_folder
  other = write_idx_folder(tmp_path / "other", train=16, test=30)
  assert cli.main(["eval", str(trained / "cnn"), f"--config.data.dir={other}"]) == 0
  out = capsys.readouterr().out
  assert f"on {other.resolve()}" in out and "examples 30" in out


@TRAINS
def test_predict_on_png_files_matches_the_evaluation_path(trained, tiny_data_dir, tmp_path):
  images, _ = _test_set(tiny_data_dir)
  files = []
  for i in range(20):
    files.append(tmp_path / f"{i}.png")
    Image.fromarray(images[i, ..., 0]).save(files[-1])
  np.save(tmp_path / "x.npy", images[0])
  files.append(tmp_path / "x.npy")
  results = report.predict_files(trained / "cnn", files, top_k=2)
  run = cnnjax.load_run(trained / "cnn")
  expected = run.predict(np.concatenate([images[:20], images[:1]])).argmax(axis=1)
  assert [r["top"][0]["class"] for r in results] == expected.tolist()
  assert all(len(r["top"]) == 2 and r["top"][0]["probability"] >= r["top"][1]["probability"]
             for r in results)


def test_big_dark_on_light_photos_are_prepared_like_mnist(tmp_path):
  digit = np.zeros((28, 28), np.uint8)  # A centred "0": a ring in a 20x20 box.
  ys, xs = np.indices((28, 28))
  r = np.hypot(ys - 13.5, xs - 13.5)
  digit[(r > 6) & (r < 10)] = 255
  photo = np.full((200, 300), 255, np.uint8)  # Dark ink on white paper, off centre.
  photo[30:130, 40:140] = 255 - np.asarray(Image.fromarray(digit).resize((100, 100)))
  Image.fromarray(photo).convert("RGB").save(tmp_path / "photo.jpg", quality=95)
  prepared = image_io.prepare(image_io.read_image(tmp_path / "photo.jpg"), (28, 28, 1))[..., 0]
  assert prepared.shape == (28, 28) and prepared[0, 0] < 30  # Light on dark now.
  assert np.corrcoef(prepared.ravel(), digit.ravel())[0, 1] > 0.9
  same = image_io.prepare(digit, (28, 28, 1))[..., 0]  # Already MNIST-like: unchanged.
  np.testing.assert_array_equal(same, digit)


@TRAINS
def test_predict_command_prints_and_rejects_bad_files(trained, tiny_data_dir, tmp_path, capsys):
  images, _ = _test_set(tiny_data_dir)
  Image.fromarray(images[0, ..., 0]).save(tmp_path / "ok.png")
  assert cli.main(["predict", str(trained / "cnn"), str(tmp_path / "ok.png"), "--json"]) == 0
  assert json.loads(capsys.readouterr().out)[0]["file"] == str(tmp_path / "ok.png")
  (tmp_path / "bad.png").write_bytes(b"not an image")
  assert cli.main(["predict", str(trained / "cnn"), str(tmp_path / "bad.png")]) == 2
  assert "bad.png: not a readable image" in capsys.readouterr().err
  with pytest.raises(DataError, match="missing.png: no such file"):
    image_io.read_image(tmp_path / "missing.png")


def test_a_npy_image_of_any_size_is_prepared_like_an_image_file_for_a_2d_run(tmp_path):
  from types import SimpleNamespace
  run = SimpleNamespace(input_shape=(12, 12, 1), input_dtype="uint8")
  digit = np.zeros((40, 40, 1), np.uint8)
  digit[10:30, 18:22] = 255
  np.save(tmp_path / "big.npy", digit)
  prepared = report._examples(run, tmp_path / "big.npy", "no")
  assert prepared.shape == (1, 12, 12, 1) and prepared.dtype == np.uint8
  assert np.array_equal(prepared[0], image_io.prepare(digit, (12, 12, 1), "no"))
  np.save(tmp_path / "batch.npy", np.stack([digit[:12, :12, 0]] * 3))
  assert report._examples(run, tmp_path / "batch.npy", "no").shape == (3, 12, 12, 1)
