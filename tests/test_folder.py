"""Image folders (`config.data.source="folder"`): train/<class>/* and test/<class>/*."""
import json

import numpy as np
import pytest
from PIL import Image

from cnnjax import config as config_lib, data
from cnnjax.errors import DataError
from cnnjax.train import loop
from helpers import ROOT

CLASSES = ("circle", "cross", "square")


def _shape(kind: str, rng) -> np.ndarray:
  """A 20x24 RGB picture of one shape, placed at random, on noise."""
  image = rng.integers(0, 60, (20, 24, 3)).astype(np.uint8)
  y, x = rng.integers(4, 12), rng.integers(4, 16)
  yy, xx = np.mgrid[:20, :24]
  if kind == "circle":
    mask = (yy - y - 3) ** 2 + (xx - x - 3) ** 2 <= 9
  elif kind == "cross":
    mask = ((yy - y - 3) == 0) & (abs(xx - x - 3) <= 3) | ((xx - x - 3) == 0) & (abs(yy - y - 3) <= 3)
  else:
    mask = (yy >= y) & (yy < y + 6) & (xx >= x) & (xx < x + 6)
  image[mask] = (250, 200, 90)
  return image


def write_folder(root, per_class=(40, 10), seed=0):
  """PNG and JPEG files in train/<class>/ and test/<class>/."""
  rng = np.random.default_rng(seed)
  for split, count in zip(("train", "test"), per_class):
    for kind in CLASSES:
      folder = root / split / kind
      folder.mkdir(parents=True, exist_ok=True)
      for i in range(count):
        suffix = ".png" if i % 2 else ".jpg"
        Image.fromarray(_shape(kind, rng)).save(folder / f"{i:03d}{suffix}")
  return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
  return write_folder(tmp_path_factory.mktemp("images"))


def _config(root, **overrides):
  return config_lib.load(str(ROOT / "configs" / "image_folder.py"), {
      "data.dir": str(root), "data.image_size": (16, 16), "num_epochs": 3, "batch_size": 24,
      "model.conv_features": (8, 16), "model.dense_features": (16,), "cpu_devices": 0,
      **overrides})


def test_a_folder_is_read_resized_and_named_by_its_classes(image_folder):
  dataset = data.load(_config(image_folder).data)
  assert dataset.train_images.shape == (120, 16, 16, 3) and dataset.train_images.dtype == np.uint8
  assert dataset.test_images.shape == (30, 16, 16, 3)
  assert dataset.class_names == CLASSES and dataset.num_classes == 3
  assert np.bincount(dataset.train_labels).tolist() == [40, 40, 40]
  assert dataset.location == f"folder:{image_folder.resolve()}"
  gray = data.load(_config(image_folder, **{"data.channels": 1, "data.image_size": (0, 0)}).data)
  assert gray.train_images.shape == (120, 20, 24, 1)


@pytest.mark.integration  # Trains a run.
def test_the_image_folder_config_trains_and_records_class_names(image_folder, tmp_path):
  summary = loop.train_and_evaluate(_config(image_folder, num_epochs=8), tmp_path / "run")
  assert summary["status"] == "finished" and summary["class_names"] == list(CLASSES)
  assert summary["test_accuracy"] > 0.6  # Chance is 1/3.
  assert json.loads((tmp_path / "run" / "summary.json").read_text())["class_names"] == list(CLASSES)


@pytest.mark.parametrize("damage, message", [
    (lambda r: [p.unlink() for p in (r / "train" / "cross").iterdir()],
     r"train/cross: no PNG or JPEG images"),
    (lambda r: (r / "test" / "star").mkdir() or
     Image.new("RGB", (24, 20)).save(r / "test" / "star" / "a.png"),
     r"test: classes star have no training images in .*train"),
    (lambda r: (r / "train" / "circle" / "000.jpg").write_bytes(b"not an image"),
     r"train/circle/000.jpg: not a readable image"),
    (lambda r: Image.new("RGB", (30, 30)).save(r / "train" / "square" / "big.png"),
     r"square/big.png: 30x30 pixels, but the first image is 24x20; set config.data.image_size"),
])
def test_bad_folders_fail_before_training_naming_the_file(damage, message, tmp_path):
  root = write_folder(tmp_path / "images", per_class=(3, 1))
  damage(root)
  with pytest.raises(DataError, match=message):
    data.load(_config(root, **{"data.image_size": (0, 0)}).data)
