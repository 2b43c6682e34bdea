"""Data sets converted to ArrayRecord files (`cnnjax data convert`), streamed from disk."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from cnnjax import cli, config as config_lib, data
from cnnjax.data import array_record, pipeline
from cnnjax.errors import DataError
from cnnjax.train import loop
from helpers import ROOT, assert_same_run, comparable_metrics

TINY = str(ROOT / "configs" / "tiny.py")


@pytest.fixture(scope="module")
def converted(tiny_data_dir, tmp_path_factory):
  folder = tmp_path_factory.mktemp("converted") / "tiny"
  assert cli.main(["data", "convert", "--config", TINY, f"--config.data.dir={tiny_data_dir}",
                   "--output", str(folder), "--shard-examples", "100"]) == 0
  return folder


def _config(folder, **overrides):
  return config_lib.load(TINY, {"data.source": "array_record", "data.dir": str(folder), **overrides})


def test_convert_writes_every_example_in_shards_that_read_back_exactly(converted, tiny_data_dir):
  memory = data.load(config_lib.load(TINY, {"data.dir": str(tiny_data_dir),
                                            "data.validation_examples": 0}).data)
  images, labels, test_images, test_labels, _ = array_record.load(converted)
  assert sorted(p.name for p in converted.glob("train-*.array_record")) == [
      f"train-0000{i}-of-00003.array_record" for i in range(3)]  # 288 examples, 100 a file.
  assert images.shape == memory.train_images.shape and images.dtype == np.uint8
  np.testing.assert_array_equal(np.asarray(images), memory.train_images)
  np.testing.assert_array_equal(labels, memory.train_labels)
  np.testing.assert_array_equal(np.asarray(test_images), memory.test_images)
  np.testing.assert_array_equal(test_labels, memory.test_labels)
  rows = np.array([287, 0, 150, 99, 100])  # Across shard boundaries, in any order.
  np.testing.assert_array_equal(images[rows], memory.train_images[rows])
  np.testing.assert_array_equal(images[7], memory.train_images[7])


def test_the_split_and_subsets_stay_on_disk(converted):
  dataset = data.load(_config(converted).data)
  assert isinstance(dataset.train_images, array_record.RecordArray)
  assert isinstance(dataset.val_images, array_record.RecordArray)
  assert len(dataset.val_labels) == 32 and len(dataset.train_labels) == 256
  assert dataset.location == f"array_record:{converted.resolve()}"
  first = next(pipeline.train_batches(dataset.train_images, dataset.train_labels, 16, 0, 0))
  assert first["images"].shape == (16, 12, 12, 1) and isinstance(first["images"], np.ndarray)
  order = pipeline.epoch_order(0, 0, 256)[:16]
  np.testing.assert_array_equal(first["images"], dataset.train_images[order])


@pytest.fixture(scope="module")
def idx_run(tiny_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("idx") / "run"
  loop.train_and_evaluate(config_lib.load(TINY, {"data.dir": str(tiny_data_dir)}), workdir)
  return workdir


@pytest.mark.integration  # Trains runs.
def test_training_on_the_converted_set_equals_training_on_the_idx_files(converted, idx_run,
                                                                         tmp_path):
  summary = loop.train_and_evaluate(_config(converted, **{"data.read_threads": 2}),
                                    tmp_path / "ar")
  assert summary["status"] == "finished"
  assert comparable_metrics(tmp_path / "ar") == comparable_metrics(idx_run)


@pytest.mark.integration
def test_worker_processes_read_the_same_batches(converted, idx_run, tmp_path):
  """Grain's worker processes (config.data.workers) from the command line, as users run it."""
  run = subprocess.run([sys.executable, "-m", "cnnjax", "train", "--config", TINY, "--workdir",
                        str(tmp_path / "w"), "--config.data.source=array_record",
                        f"--config.data.dir={converted}", "--config.data.workers=1"],
                       capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr
  assert comparable_metrics(tmp_path / "w") == comparable_metrics(idx_run)


def _damaged(tmp_path, converted, damage):
  import shutil
  folder = tmp_path / "damaged"
  shutil.copytree(converted, folder)
  damage(folder)
  return folder


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.joinpath("train-00001-of-00003.array_record").write_bytes(
        f.joinpath("train-00001-of-00003.array_record").read_bytes()[:700]),
     r"train-00001-of-00003.array_record: (not a readable array_record file|holds \d+ records)"),
    (lambda f: f.joinpath("test-00000-of-00001.array_record").unlink(),
     r"test-00000-of-00001.array_record: missing"),
    (lambda f: f.joinpath("cnnjax_dataset.json").unlink(),
     r"cnnjax_dataset.json: not found; write an ArrayRecord data set with `cnnjax data convert"),
    (lambda f: f.joinpath("train.labels.npy").write_bytes(b"junk"), r"train.labels.npy: unreadable"),
])
def test_damaged_sets_fail_before_training_naming_the_file(damage, message, converted, tmp_path):
  folder = _damaged(tmp_path, converted, damage)
  with pytest.raises(DataError, match=message):
    data.load(_config(folder).data)


@pytest.mark.integration
def test_kill_9_mid_epoch_on_the_streaming_path_resumes_bit_identical(converted, tiny_data_dir,
                                                                     tmp_path):
  reference = tmp_path / "reference"
  loop.train_and_evaluate(config_lib.load(TINY, {"data.dir": str(tiny_data_dir),
                                                 "num_epochs": 3}), reference)
  workdir = tmp_path / "killed"
  command = [sys.executable, "-m", "cnnjax", "train", "--config", TINY, "--workdir",
             str(workdir), "--config.data.source=array_record", f"--config.data.dir={converted}",
             "--config.num_epochs=3"]
  for pause in ("step:21", "eval:2"):  # Mid-epoch, with batches read ahead; in an evaluation.
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, CNNJAX_PAUSE_AT=pause))
    for line in proc.stderr:
      if f"paused at {pause}" in line:
        break
    else:
      raise AssertionError(f"the run never paused at {pause}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert finished.returncode == 0, finished.stderr
  assert_same_run(workdir, reference, step=48)
