"""Whole runs on tiny data through `train_and_evaluate`: records, resume, refusals."""
import json
import os
import signal
import sys

import jax
import numpy as np
import pytest

from cnnjax.data import pipeline
from cnnjax.errors import WorkdirError
from cnnjax.runs import records
from cnnjax.train import loop

from conftest import comparable_metrics as _metrics, latest_checkpoint
from cnnjax.runs.metrics import TIMING


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data_dir):
  from cnnjax import config as config_lib
  from conftest import ROOT
  config = config_lib.load(str(ROOT / "configs" / "tiny.py"), {"data.dir": str(tiny_data_dir)})
  workdir = tmp_path_factory.mktemp("runs") / "uninterrupted"
  summary = loop.train_and_evaluate(config, workdir)
  return config, workdir, summary


def test_run_directory_holds_every_record(finished_run):
  config, workdir, summary = finished_run
  for name in ("config.json", "run.json", "metrics.jsonl", "summary.json", "model_summary.txt"):
    assert (workdir / name).is_file(), name
  events = list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  # Written by a background thread; a header alone is 40 bytes, each scalar ~40 more.
  assert events and sum(f.stat().st_size for f in events) > 40 * 10
  assert sys.modules.get("torch", "absent") is not None  # Hidden from tensorboardX only.
  assert json.loads((workdir / "summary.json").read_text()) == summary
  assert summary["status"] == "finished"
  assert summary["epochs"] == 2 and summary["steps"] == 2 * (256 // 16)
  for key in ("test_accuracy", "best_test_accuracy", "train_seconds", "wall_seconds",
              "images_per_second"):
    assert summary[key] > 0, key
  assert summary["best_test_accuracy"] >= summary["test_accuracy"]
  assert summary["test_accuracy"] > 0.5  # Four classes: well above chance after 2 epochs.
  assert json.loads((workdir / "config.json").read_text())["model"]["conv_features"] == [4, 8]
  run = json.loads((workdir / "run.json").read_text())
  assert run["seed"] == 0 and len(run["devices"]) == 8 and run["versions"]["jax"] == jax.__version__
  assert {"argv", "start_time", "git", "platform"} <= set(run)
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [l["epoch"] for l in lines] == [1, 2]
  assert {"step", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "learning_rate",
          "images_per_second", "wall_seconds"} <= set(lines[0])
  assert sorted(os.listdir(workdir / "checkpoints")) == ["16", "32"]
  assert os.listdir(workdir / "best")


def test_same_config_and_seed_give_identical_metrics(finished_run, tmp_path):
  config, workdir, _ = finished_run
  loop.train_and_evaluate(config, tmp_path / "again")
  assert _metrics(tmp_path / "again") == _metrics(workdir)


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(finished_run, tmp_path, monkeypatch):
  config, reference, _ = finished_run
  workdir = tmp_path / "interrupted"
  original = pipeline.train_batches

  def signalled_batches(*args, **kwargs):
    for i, batch in enumerate(original(*args, **kwargs)):
      if i == 5 and args[4] == 1:  # Epoch 2, after five steps.
        os.kill(os.getpid(), signal.SIGTERM)
      yield batch

  monkeypatch.setattr(pipeline, "train_batches", signalled_batches)
  with pytest.raises(loop.Interrupted, match="SIGTERM at step 22"):
    loop.train_and_evaluate(config, workdir)
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["status"] == "interrupted" and summary["epochs"] == 1
  monkeypatch.setattr(pipeline, "train_batches", original)

  resumed = loop.train_and_evaluate(config, workdir)
  assert resumed["status"] == "finished"
  assert _metrics(workdir) == _metrics(reference)  # No epoch lost or written twice.
  a, b = latest_checkpoint(workdir)[1], latest_checkpoint(reference)[1]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)  # Bit for bit.
  assert len(json.loads((workdir / "run.json").read_text())["resumes"]) == 1


def test_finished_workdir_is_not_trained_again(finished_run, tmp_path):
  config, workdir, summary = finished_run
  again = loop.train_and_evaluate(config, workdir)
  assert {k: v for k, v in again.items() if k not in TIMING | {"ended"}} == \
      {k: v for k, v in summary.items() if k not in TIMING | {"ended"}}


def test_workdir_of_another_config_is_refused_naming_fields(finished_run):
  config, workdir, _ = finished_run
  other = config.copy_and_resolve_references()
  other.optimizer.learning_rate = 0.5
  with pytest.raises(WorkdirError, match=r"optimizer\.learning_rate: 0\.01 -> 0\.5"):
    loop.train_and_evaluate(other, workdir)


def test_a_held_workdir_is_refused_naming_the_holder(finished_run, tmp_path):
  config, _, _ = finished_run
  lock = records.Lock(tmp_path / "held")
  lock.acquire()
  try:
    with pytest.raises(WorkdirError, match=rf"in use by pid {os.getpid()} on"):
      loop.train_and_evaluate(config, tmp_path / "held")
  finally:
    lock.release()


def test_nan_loss_fails_the_run_with_status_failed(finished_run, tmp_path):
  config, _, _ = finished_run
  config = config.copy_and_resolve_references()
  config.data.mean = float("nan")  # Every input becomes NaN.
  from cnnjax.errors import TrainingError
  with pytest.raises(TrainingError, match=r"NaN or infinite at step 1; .*last good checkpoint: step None"):
    loop.train_and_evaluate(config, tmp_path / "nan")
  summary = json.loads((tmp_path / "nan" / "summary.json").read_text())
  assert summary["status"] == "failed" and "at step 1" in summary["error"]
  assert not os.listdir(tmp_path / "nan" / "checkpoints")
