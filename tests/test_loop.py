"""Whole runs on tiny data through `train_and_evaluate`: records, resume, refusals."""
import json
import os
import signal

import jax
import numpy as np
import pytest

from cnnjax.data import pipeline
from cnnjax.errors import WorkdirError
from cnnjax.train import loop, runlog

from cnnjax.runs.metrics import TIMING
from helpers import assert_same_run, comparable_metrics as _metrics, held, latest_checkpoint

pytestmark = pytest.mark.integration  # Every test here trains whole runs.


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data_dir):
  from cnnjax import config as config_lib
  from helpers import ROOT
  config = config_lib.load(str(ROOT / "configs" / "tiny.py"), {"data.dir": str(tiny_data_dir)})
  workdir = tmp_path_factory.mktemp("runs") / "uninterrupted"
  summary = loop.train_and_evaluate(config, workdir)
  return config, workdir, summary


def test_run_directory_holds_every_record(finished_run):
  _, workdir, summary = finished_run
  for name in ("config.json", "run.json", "metrics.jsonl", "summary.json", "model_summary.txt"):
    assert (workdir / name).is_file(), name
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  for tag in ("train_loss", "val_accuracy", "learning_rate"):
    assert _scalars(workdir, tag) == [(l["step"], pytest.approx(l[tag], rel=1e-6)) for l in lines]
  assert json.loads((workdir / "summary.json").read_text()) == summary
  assert summary["status"] == "finished"
  assert summary["epochs"] == 2 and summary["steps"] == 2 * ((288 - 32) // 16)
  assert (summary["train_examples"], summary["validation_examples"]) == (256, 32)
  for key in ("test_accuracy", "final_test_accuracy", "val_accuracy", "best_val_accuracy",
              "train_seconds", "wall_seconds", "images_per_second"):
    assert summary[key] > 0, key
  assert 0 < summary["startup_seconds"] < summary["wall_seconds"]
  assert "best_test_accuracy" not in summary and summary["checkpoint_select"] == "val_accuracy"
  assert summary["best_val_accuracy"] >= summary["val_accuracy"]
  assert summary["test_accuracy"] > 0.5  # Four classes: well above chance after 2 epochs.
  assert json.loads((workdir / "config.json").read_text())["model"]["conv_features"] == [4, 8]
  run = json.loads((workdir / "run.json").read_text())
  assert run["seed"] == 0 and len(run["devices"]) == 8 and run["versions"]["jax"] == jax.__version__
  assert {"argv", "start_time", "git", "platform"} <= set(run)
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [l["epoch"] for l in lines] == [1, 2]
  assert {"step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate",
          "images_per_second", "wall_seconds"} <= set(lines[0])
  assert not any(k.startswith("test_") for k in lines[0])  # Opt-in: config.test_curves.
  assert sorted(os.listdir(workdir / "checkpoints")) == ["16", "32"]
  best = max(lines, key=lambda l: l["val_accuracy"])
  assert summary["selected_epoch"] == best["epoch"] and summary["val_accuracy"] == best["val_accuracy"]
  assert os.listdir(workdir / "selected") == [str(best["step"])]


def test_same_config_and_seed_give_identical_metrics(finished_run, tmp_path):
  config, workdir, _ = finished_run
  loop.train_and_evaluate(config, tmp_path / "again")
  assert _metrics(tmp_path / "again") == _metrics(workdir)


# Epoch 2 after five steps (22), or with the last batch of epoch 1 (16 steps per epoch): the
# run stops after that epoch's evaluation, which the resumed run must not lose.
@pytest.mark.parametrize("epoch, batch, step", [(1, 5, 22), (0, 15, 16)])
def test_sigterm_then_resume_equals_uninterrupted(finished_run, tmp_path, monkeypatch, epoch,
                                                  batch, step):
  config, reference, _ = finished_run
  workdir = tmp_path / "interrupted"
  original = pipeline.train_batches

  def signalled_batches(*args, **kwargs):
    for i, item in enumerate(original(*args, **kwargs)):
      if i == batch and args[4] == epoch:
        os.kill(os.getpid(), signal.SIGTERM)
      yield item

  monkeypatch.setattr(pipeline, "train_batches", signalled_batches)
  with pytest.raises(loop.Interrupted, match=f"SIGTERM at step {step}:"):
    loop.train_and_evaluate(config, workdir)
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["status"] == "interrupted" and summary["epochs"] == 1
  assert latest_checkpoint(workdir)[0] == step
  monkeypatch.setattr(pipeline, "train_batches", original)

  resumed = loop.train_and_evaluate(config, workdir)
  assert resumed["status"] == "finished"
  assert_same_run(workdir, reference, step=32)  # No epoch lost or written twice; bit for bit.
  assert len(json.loads((workdir / "run.json").read_text())["resumes"]) == 1
  assert _scalars(workdir, "train_loss") == _scalars(reference, "train_loss")  # TensorBoard too.


def _scalars(workdir, tag):
  """(step, value) of a TensorBoard scalar as TensorBoard shows it (killed sessions' events
  past a resume point purged)."""
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  events = EventAccumulator(str(workdir / "tensorboard"))
  events.Reload()
  return [(e.step, e.value) for e in events.Scalars(tag)]


def test_finished_workdir_is_not_trained_again(finished_run):
  config, workdir, summary = finished_run
  again = loop.train_and_evaluate(config, workdir)
  assert {k: v for k, v in again.items() if k not in TIMING | {"ended"}} == \
      {k: v for k, v in summary.items() if k not in TIMING | {"ended"}}


def test_killed_between_the_two_writes_of_a_selected_checkpoint_resumes_to_the_same_run(
    finished_run, tmp_path, monkeypatch):
  import orbax.checkpoint as ocp
  config, _, summary = finished_run
  save, writes = ocp.CheckpointManager.save, []

  class Killed(BaseException):
    pass

  def save_then_die(self, step, *args, **kwargs):  # Epoch 1 is selected: two writes.
    save(self, step, *args, **kwargs)
    writes.append(step)
    if len(writes) == 1:
      raise Killed

  monkeypatch.setattr(ocp.CheckpointManager, "save", save_then_die)
  with pytest.raises(Killed):
    loop.train_and_evaluate(config, tmp_path / "run")
  monkeypatch.undo()
  resumed = loop.train_and_evaluate(config, tmp_path / "run")
  assert {k: v for k, v in resumed.items() if k not in TIMING | {"ended"}} == \
      {k: v for k, v in summary.items() if k not in TIMING | {"ended"}}
  assert resumed["selected_step"] == resumed["selected_epoch"] * resumed["steps_per_epoch"]


def test_workdir_of_another_config_is_refused_naming_fields(finished_run):
  config, workdir, _ = finished_run
  other = config.copy_and_resolve_references()
  other.optimizer.learning_rate = 0.5
  with pytest.raises(WorkdirError, match=r"optimizer\.learning_rate: 0\.01 -> 0\.5"):
    loop.train_and_evaluate(other, workdir)


def test_a_held_workdir_is_refused_naming_the_holder(finished_run, tmp_path):
  config, _, _ = finished_run
  with held(tmp_path / "held"):
    with pytest.raises(WorkdirError, match=rf"in use by pid {os.getpid()} on"):
      loop.train_and_evaluate(config, tmp_path / "held")


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


def _permuted_test_labels(source, target):
  """A copy of the tiny IDX folder whose test labels are shuffled."""
  import shutil
  from cnnjax.data import idx
  from helpers import write_idx
  shutil.copytree(source, target)
  labels = idx.load_folder(source, 4)[3]
  write_idx(target / "t10k-labels-idx1-ubyte.gz", np.random.default_rng(7).permutation(labels))
  return target


def test_nothing_is_chosen_on_the_test_set(finished_run, tiny_data_dir, tmp_path):
  config, reference, summary = finished_run
  permuted = config.copy_and_resolve_references()
  permuted.data.dir = str(_permuted_test_labels(tiny_data_dir, tmp_path / "data"))
  other = loop.train_and_evaluate(permuted, tmp_path / "permuted")
  assert _metrics(tmp_path / "permuted") == _metrics(reference)  # Train and val metrics.
  assert other["selected_epoch"] == summary["selected_epoch"]
  assert other["test_accuracy"] != summary["test_accuracy"]  # The test labels did change.
  from cnnjax.runs.checkpoints import Checkpoints
  for which in ("selected", "latest"):
    a = Checkpoints(tmp_path / "permuted", keep=1).restore_arrays(which)
    b = Checkpoints(reference, keep=1).restore_arrays(which)
    assert a[0] == b[0]
    for x, y in zip(jax.tree.leaves(a[1]), jax.tree.leaves(b[1])):
      np.testing.assert_array_equal(x, y)


def test_test_accuracy_is_that_of_the_selected_model(finished_run, tiny_data_dir, tmp_path,
                                                     monkeypatch):
  import cnnjax
  from cnnjax.data import idx
  config, _, _ = finished_run
  monkeypatch.setattr(runlog, "selection_score", lambda record, rule: -record["step"])  # Epoch 1.
  summary = loop.train_and_evaluate(config, tmp_path / "first")
  assert summary["selected_epoch"] == 1 and summary["selected_step"] == 16
  images, labels = idx.load_folder(tiny_data_dir, 4)[2:]
  accuracy = lambda which: float(np.mean(cnnjax.load_run(tmp_path / "first", which)
                                         .predict(images).argmax(-1) == labels))
  assert summary["test_accuracy"] == pytest.approx(accuracy("selected"), abs=1e-6)
  assert summary["final_test_accuracy"] == pytest.approx(accuracy("latest"), abs=1e-6)


@pytest.mark.parametrize("rule", ["train_loss", "last"])
def test_select_by_train_loss_or_last_without_a_validation_split(finished_run, tmp_path, rule):
  config, _, _ = finished_run
  config = config.copy_and_resolve_references()
  config.data.validation_examples, config.checkpoint.select = 0, rule
  summary = loop.train_and_evaluate(config, tmp_path / rule)
  lines = [json.loads(l) for l in (tmp_path / rule / "metrics.jsonl").read_text().splitlines()]
  assert not any(k.startswith(("val_", "test_")) for k in lines[0])
  assert "val_accuracy" not in summary and summary["train_examples"] == 288
  expected = min(lines, key=lambda l: l["train_loss"]) if rule == "train_loss" else lines[-1]
  assert summary["selected_epoch"] == expected["epoch"]
  if rule == "last":
    assert summary["test_accuracy"] == summary["final_test_accuracy"]


def test_validation_is_the_same_on_one_device_and_test_curves_are_opt_in(finished_run, tmp_path):
  config, reference, summary = finished_run
  config = config.copy_and_resolve_references()
  config.num_devices, config.test_curves = 1, True
  one = loop.train_and_evaluate(config, tmp_path / "one")
  lines = [json.loads(l) for l in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
  assert {"test_loss", "test_accuracy"} <= set(lines[0])
  for a, b in zip(lines, _metrics(reference)):
    assert a["val_accuracy"] == b["val_accuracy"]
    assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
  assert one["selected_epoch"] == summary["selected_epoch"]


def test_a_failed_checkpoint_write_names_the_copy_and_the_step_a_resume_starts_from(tmp_path,
                                                                                   monkeypatch):
  from cnnjax.errors import CheckpointError
  from cnnjax.runs.checkpoints import Checkpoints
  ckpts = Checkpoints(tmp_path / "run", keep=2)

  def full(*args, **kwargs):
    raise OSError(28, "No space left on device")

  def error_saving(step, manager):
    with monkeypatch.context() as patch:
      patch.setattr(manager, "save", full)
      with pytest.raises(CheckpointError) as failed:
        ckpts.save(step, {"w": np.arange(3.0)}, selected=True)
    return str(failed.value)

  message = lambda step, folder, complete: (
      f"could not write the checkpoint of step {step} in {tmp_path / 'run' / folder}: "
      f"[Errno 28] No space left on device; {complete}")
  assert error_saving(1, ckpts._latest) == message(1, "checkpoints", "none is complete")
  assert error_saving(2, ckpts._selected) == message(2, "selected", "the latest complete is step 2")
  ckpts.close()
