"""TensorBoard's HParams summary of each run, read back with TensorBoard's own reader."""
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from cnnjax import config as config_lib
from cnnjax.exp import sweep
from cnnjax.train import loop
from helpers import ROOT

pytestmark = pytest.mark.integration  # Trains whole runs.

TINY = str(ROOT / "configs" / "tiny.py")


def _read(workdir):
  """(hparams {name: value}, the final scalars {tag: value}) of a run's events."""
  events = EventAccumulator(str(workdir / "tensorboard"))
  events.Reload()
  content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
  start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
  values = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
            for k, v in start.hparams.items()}
  scalars = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
  return values, scalars


def test_a_lone_run_gives_every_scalar_field_and_its_final_metrics(tiny_data_dir, tmp_path):
  config = config_lib.load(TINY, {"data.dir": str(tiny_data_dir), "num_epochs": 1})
  summary = loop.train_and_evaluate(config, tmp_path / "run")
  values, scalars = _read(tmp_path / "run")
  assert values["optimizer.learning_rate"] == pytest.approx(0.01)
  assert values["model.batch_norm"] is True and values["optimizer.name"] == "adamw"
  assert values["num_epochs"] == 1 and "model.conv_features" not in values  # Scalars only.
  assert scalars["summary/test_accuracy"] == pytest.approx(summary["test_accuracy"])
  assert scalars["summary/final_test_accuracy"] == pytest.approx(summary["final_test_accuracy"])
  assert scalars["summary/wall_seconds"] == pytest.approx(summary["wall_seconds"], rel=0.05)


def test_a_sweeps_runs_give_the_fields_it_varies(tiny_data_dir, tmp_path):
  base = config_lib.load(TINY, {"data.dir": str(tiny_data_dir), "num_epochs": 1})
  points = [{"optimizer.learning_rate": lr, "model.conv_features": (4, 8)} for lr in (0.01, 0.02)]
  sweep.run_sweep(base, points, tmp_path / "sweep", log=lambda *_: None)
  for point in points:
    values, scalars = _read(tmp_path / "sweep" / sweep.point_name(point))
    assert values == {"model.conv_features": "(4, 8)",
                      "optimizer.learning_rate": pytest.approx(point["optimizer.learning_rate"])}
    assert {"val_accuracy", "summary/val_accuracy"} <= set(scalars)


def test_a_paused_run_shows_its_figures_so_far_and_its_end_replaces_them(tiny_data_dir, tmp_path):
  """A halving sweep's stopped points are in the dashboard too; a promoted one's final
  figures are the latest, with the same field values (TensorBoard keeps the first)."""
  fields = {"data.dir": str(tiny_data_dir), "num_epochs": 2}
  paused = loop.train_and_evaluate(config_lib.load(TINY, {**fields, "pause_at_epoch": 1}),
                                   tmp_path / "run")
  values, scalars = _read(tmp_path / "run")
  assert "pause_at_epoch" not in values and values["num_epochs"] == 2
  assert scalars["summary/val_accuracy"] == pytest.approx(paused["val_accuracy"])
  assert "summary/test_accuracy" not in scalars  # A paused run reads no test figure.
  finished = loop.train_and_evaluate(config_lib.load(TINY, fields), tmp_path / "run")
  again, scalars = _read(tmp_path / "run")
  assert again == values
  assert scalars["summary/test_accuracy"] == pytest.approx(finished["test_accuracy"])
  assert scalars["summary/train_loss"] == pytest.approx(finished["train_loss"])
