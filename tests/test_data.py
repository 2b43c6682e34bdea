import gzip
import http.server
import threading

import numpy as np
import pytest

from cnnjax import data
from cnnjax.data import fetch, idx, pipeline
from cnnjax.data.streaming import StreamingArray
from cnnjax.errors import DataError
from helpers import synthetic_digits, write_idx, write_idx_folder


def _data_config(source="idx", **fields):
  return data.config(source, **fields)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_round_trip(tmp_path, gz):
  write_idx_folder(tmp_path, train=50, test=20, gz=gz)
  train_x, train_y, test_x, _ = idx.load_folder(tmp_path, num_classes=4)
  images, labels = synthetic_digits(50, 0)
  np.testing.assert_array_equal(train_x[..., 0], images)
  np.testing.assert_array_equal(train_y, labels)
  assert train_x.dtype == np.uint8 and train_y.dtype == np.int32
  assert test_x.shape == (20, 12, 12, 1)


def _break(folder, name, transform):
  path = folder / name
  path.write_bytes(transform(path.read_bytes()))
  return path


@pytest.mark.parametrize("name, transform, message", [
    ("train-images-idx3-ubyte.gz", lambda b: b[:len(b) // 2], "not a readable gzip file"),
    ("train-images-idx3-ubyte.gz", lambda b: b"garbage" + b[7:], "not a readable gzip file"),
    ("train-images-idx3-ubyte.gz", lambda b: gzip.compress(gzip.decompress(b)[:-100]),
     r"header promises shape \(288, 12, 12\) \(41472 bytes\) but the file holds 41372"),
    ("train-labels-idx1-ubyte.gz", lambda b: gzip.compress(b"\x00\x00\x09\x01" + gzip.decompress(b)[4:]),
     "bad IDX magic number 2305"),
    ("t10k-labels-idx1-ubyte.gz", lambda b: gzip.compress(gzip.decompress(b)[:-1][:4] +
     (59).to_bytes(4, "big") + gzip.decompress(b)[8:-1]), "holds 60 images but .* holds 59 labels"),
])
def test_corrupt_files_fail_naming_file_and_problem(tmp_path, name, transform, message):
  write_idx_folder(tmp_path)
  path = _break(tmp_path, name, transform)
  with pytest.raises(DataError, match=message) as e:
    idx.load_folder(tmp_path, num_classes=4)
  assert path.name in str(e.value)


def test_labels_outside_the_class_count_fail(tmp_path):
  write_idx_folder(tmp_path)
  with pytest.raises(DataError, match=r"label 3 is outside the 3 classes of config\.data\.num_classes"):
    idx.load_folder(tmp_path, num_classes=3)


def test_missing_file_is_named(tmp_path):
  write_idx_folder(tmp_path)
  (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
  with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte"):
    idx.load_folder(tmp_path, num_classes=4)


def test_folder_from_config_env_or_named_subfolder(tmp_path, monkeypatch):
  write_idx_folder(tmp_path / "mnist", train=40, test=10)
  monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
  by_config = data.load(_data_config(dir=str(tmp_path), num_classes=4, download=False))
  monkeypatch.setenv(data.ENV_DATA_DIR, str(tmp_path / "mnist"))
  by_env = data.load(_data_config(num_classes=4, download=False))
  assert by_config.location == by_env.location == str((tmp_path / "mnist").resolve())
  assert len(by_env.train_labels) == 40
  first = data.load(_data_config(num_classes=4, download=False, train_examples=16))
  np.testing.assert_array_equal(first.train_labels, by_env.train_labels[:16])


def test_missing_data_offline_fails_fast_saying_where_it_looked(tmp_path, monkeypatch):
  monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
  monkeypatch.setenv("CNNJAX_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setattr(fetch, "MIRRORS", {"mnist": ("http://127.0.0.1:9/",)})  # Nothing listens.
  tried, urlopen = [], fetch.urllib.request.urlopen
  monkeypatch.setattr(fetch.urllib.request, "urlopen",
                      lambda url, timeout: tried.append(url) or urlopen(url, timeout=timeout))
  with pytest.raises(DataError) as e:
    data.load(_data_config())
  first = next(iter(fetch.CHECKSUMS["mnist"]))
  assert tried == [f"http://127.0.0.1:9/{first}.gz"]  # One try, no retry loop: fails at once.
  message = str(e.value)
  assert str(tmp_path / "cache" / "mnist") in message
  assert "could not download" in message and "--config.data.dir=DIR or CNNJAX_DATA_DIR=DIR" in message
  with pytest.raises(DataError, match=r"looked in .*nowhere.* \(config\.data\.dir\)"):
    data.load(_data_config(dir=str(tmp_path / "nowhere")))


@pytest.fixture
def file_server(tmp_path):
  """Serves tmp_path/served over HTTP on loopback."""
  served = tmp_path / "served"
  served.mkdir()
  handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  server.RequestHandlerClass.log_message = lambda *a: None
  threading.Thread(target=server.serve_forever, daemon=True).start()
  yield served, f"http://127.0.0.1:{server.server_address[1]}/"
  server.shutdown()


def test_fetch_verifies_checksums_and_caches(file_server, tmp_path, monkeypatch):
  import hashlib
  served, url = file_server
  write_idx_folder(served, train=30, test=10)
  sums = {p.name[:-3]: hashlib.sha256(gzip.decompress(p.read_bytes())).hexdigest()
          for p in served.glob("*.gz")}
  monkeypatch.setitem(fetch.CHECKSUMS, "tinyset", sums)
  monkeypatch.setitem(fetch.MIRRORS, "tinyset", ("http://127.0.0.1:9/", url))  # First fails.
  monkeypatch.setenv("CNNJAX_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.delenv(data.ENV_DATA_DIR, raising=False)
  dataset = data.load(_data_config(name="tinyset", num_classes=4))
  assert len(dataset.train_labels) == 30
  assert sorted(p.name for p in (tmp_path / "cache" / "tinyset").iterdir()) == sorted(
      p.name for p in served.iterdir())
  # A mirror serving other bytes is rejected, and nothing half-written is left behind.
  write_idx(served / "t10k-labels-idx1-ubyte.gz", np.zeros(10, np.uint8))
  with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: .*sha256 .* is not the expected"):
    fetch.fetch("tinyset", tmp_path / "other")
  assert not list((tmp_path / "other").glob("t10k-labels*"))


def test_epoch_order_is_seeded_and_changes_every_epoch():
  a = pipeline.epoch_order(seed=0, epoch=0, n=1000)
  assert sorted(a) == list(range(1000))
  np.testing.assert_array_equal(a, pipeline.epoch_order(0, 0, 1000))
  assert not np.array_equal(a, pipeline.epoch_order(0, 1, 1000))
  assert not np.array_equal(a, pipeline.epoch_order(1, 0, 1000))


def test_train_batches_are_full_and_resume_mid_epoch():
  x, y = np.arange(103)[:, None], np.arange(103)
  batches = list(pipeline.train_batches(x, y, 10, seed=3, epoch=2))
  assert len(batches) == 10 and all(len(b["labels"]) == 10 for b in batches)
  assert len(set(np.concatenate([b["labels"] for b in batches]))) == 100
  tail = list(pipeline.train_batches(x, y, 10, seed=3, epoch=2, start_step=7))
  assert all(np.array_equal(a["labels"], b["labels"]) for a, b in zip(batches[7:], tail))


@pytest.mark.parametrize("padded, share", [(0, slice(None)), (12, slice(None)), (12, slice(6, 12))])
def test_the_batch_to_compile_for_is_shaped_as_the_training_batches(padded, share):
  """What the loop compiles the train step for ahead of time: the same keys, shapes and
  dtypes as each training batch (padding and a process's share included)."""
  x, y = np.zeros((103, 4, 4, 1), np.uint8), np.arange(103, dtype=np.int32)
  like = pipeline.first_train_batch(x, y, 10, padded, share)
  for batch in pipeline.train_batches(x, y, 10, seed=3, epoch=1, padded_size=padded, share=share):
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        k: (v.shape, v.dtype) for k, v in like.items()}
  assert ("mask" in like) == bool(padded)


@pytest.mark.parametrize("n, share", [(103, slice(None)), (7, slice(None)), (103, slice(4, 8))])
def test_the_batch_to_compile_eval_for_is_shaped_as_the_eval_batches(n, share):
  x, y = np.zeros((n, 4, 4, 1), np.uint8), np.arange(n, dtype=np.int32)
  like = pipeline.first_eval_batch(x, y, 8, share)
  for batch in pipeline.eval_batches(x, y, 8, share):
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        k: (v.shape, v.dtype) for k, v in like.items()}


@pytest.mark.parametrize("n, batch", [(103, 10), (100, 10), (7, 24), (1000, 1000)])
def test_eval_batches_count_every_example_once(n, batch):
  x, y = np.arange(n)[:, None], np.arange(n)
  batches = list(pipeline.eval_batches(x, y, batch))
  assert all(len(b["labels"]) == batch for b in batches)
  seen = np.concatenate([b["labels"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(seen, y)


def test_tfds_prepared_image_set_is_read_without_tensorflow(tmp_path):
  """An `Image` feature, as TFDS's own image sets have: PNG inside each record, written
  and decoded with Pillow (TensorFlow is not installed)."""
  import tensorflow_datasets as tfds
  from PIL import Image

  images, labels = synthetic_digits(40, 0)

  class TinyDigits(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(12, 12, 1)),
          "label": tfds.features.ClassLabel(num_classes=4)}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(0, 30), "test": self._generate_examples(30, 40)}

    def _generate_examples(self, start, stop):
      for i in range(start, stop):
        yield i, {"image": Image.fromarray(images[i]), "label": int(labels[i])}

  TinyDigits(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  dataset = data.load(_data_config(source="tfds", name="tiny_digits", dir=str(tmp_path),
                                   num_classes=4))
  assert dataset.train_images.shape == (30, 12, 12, 1) and len(dataset.test_labels) == 10
  assert isinstance(dataset.train_images, StreamingArray)  # Images stay in TFDS's files.
  # TFDS shuffles on write; every (image, label) pair must survive intact.
  got = {dataset.train_images[i].tobytes(): dataset.train_labels[i] for i in range(30)}
  assert got == {images[i][..., None].tobytes(): labels[i] for i in range(30)}
  with pytest.raises(DataError, match="TFDS data set 'tiny_digits' split 'train' is not prepared"):
    data.load(_data_config(source="tfds", name="tiny_digits", dir=str(tmp_path / "empty")))


def test_real_mnist_files(mnist_dir):
  train_x, train_y, test_x, test_y = idx.load_folder(mnist_dir, num_classes=10)
  assert train_x.shape == (60000, 28, 28, 1) and test_x.shape == (10000, 28, 28, 1)
  assert np.bincount(train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
  assert np.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize("batch, fraction, n, expected", [
    (16, 0.0, 36, 16),    # no cap
    (16, 0.1, 36, 3),     # ArrowHead: min(16, 36 / 10)
    (16, 0.1, 67, 6),     # ItalyPowerDemand
    (16, 0.1, 200, 16),   # OSULeaf: the cap is above the batch
    (16, 0.1, 5, 1),      # never below one example
])
def test_batch_size_capped_at_a_fraction_of_the_training_set(batch, fraction, n, expected):
  assert pipeline.batch_size(batch, fraction, n) == expected


def test_validation_split_is_stratified_disjoint_and_fixed_by_the_seed():
  labels = np.repeat(np.arange(4), [100, 50, 30, 20]).astype(np.int32)
  images = np.arange(len(labels))[:, None]  # Each image is its index.
  val = pipeline.validation_indices(labels, 40, seed=3)
  np.testing.assert_array_equal(val, pipeline.validation_indices(labels, 40, seed=3))
  assert not np.array_equal(val, pipeline.validation_indices(labels, 40, seed=4))
  assert np.bincount(labels[val]).tolist() == [20, 10, 6, 4]  # 40 in the classes' proportions.
  dataset = pipeline.hold_out(pipeline.Dataset(images, labels, images[:5], labels[:5], 4, "x"),
                              40, seed=3)
  assert dataset.has_validation and len(dataset.val_labels) == 40
  np.testing.assert_array_equal(dataset.val_images[:, 0], val)
  kept = dataset.train_images[:, 0]
  assert len(kept) == 160 and np.all(np.diff(kept) > 0)  # The rest, in their order.
  assert not set(kept) & set(val)
  uneven = pipeline.validation_indices(labels, 7, seed=0)  # Shares 3.5, 1.75, 1.05, 0.7.
  assert np.bincount(labels[uneven], minlength=4).tolist() == [3, 2, 1, 1]


def test_validation_examples_come_before_train_examples_and_are_checked(tmp_path):
  write_idx_folder(tmp_path, train=100, test=10)
  dataset = data.load(_data_config(dir=str(tmp_path), num_classes=4, validation_examples=20,
                                   train_examples=50), seed=0)
  full = data.load(_data_config(dir=str(tmp_path), num_classes=4, validation_examples=20), seed=0)
  np.testing.assert_array_equal(dataset.val_labels, full.val_labels)  # Not cut by train_examples.
  np.testing.assert_array_equal(dataset.train_images, full.train_images[:50])
  with pytest.raises(DataError, match=r"config\.data\.validation_examples=100 but .* holds 100"):
    data.load(_data_config(dir=str(tmp_path), num_classes=4, validation_examples=100), seed=0)
  with pytest.raises(DataError, match=r"train_examples=90 but .* holds 80 training examples "
                                      r"after 20 held out"):
    data.load(_data_config(dir=str(tmp_path), num_classes=4, validation_examples=20,
                           train_examples=90), seed=0)
