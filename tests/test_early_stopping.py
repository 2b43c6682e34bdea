"""Early stopping (config.early_stopping): the rule on metrics records, and whole runs that
stop, deliver their selected checkpoint and say why, resumed or not."""
import json

import pytest

from cnnjax import config as config_lib
from cnnjax.errors import ConfigError
from cnnjax.train import loop, runlog
from helpers import ROOT, latest_checkpoint

TINY = str(ROOT / "configs" / "tiny.py")


def _records(*accuracies):
  return [{"epoch": i + 1, "step": 10 * (i + 1), "val_accuracy": a, "train_loss": 1.0}
          for i, a in enumerate(accuracies)]


def test_the_rule_counts_epochs_since_the_last_improvement_of_min_delta():
  stop = lambda history, patience=2, delta=0.01: runlog.early_stop(history, "val_accuracy",
                                                                   patience, delta)
  assert stop(_records(0.5, 0.6, 0.6)) is None  # One epoch without improvement.
  assert stop(_records(0.5, 0.6, 0.6, 0.605)) == (
      "stopped early at epoch 4: val_accuracy did not improve by 0.01 or more in 2 epochs "
      "since epoch 2")
  assert stop(_records(0.5, 0.6, 0.6, 0.62)) is None  # Epoch 4 improved by 0.02.
  assert stop(_records(0.5, 0.6, 0.6, 0.605), patience=0) is None  # Off.
  assert stop(_records(0.5, 0.6, 0.6, 0.605), delta=0.0) is None  # 0.605 > 0.6 improves.


def test_patience_needs_a_selection_metric(tiny_data_dir):
  config = config_lib.load(TINY, {"data.dir": str(tiny_data_dir), "early_stopping.patience": 2,
                                  "checkpoint.select": "last"})
  with pytest.raises(ConfigError, match=r"config\.early_stopping\.patience: stops on the "
                                        r"selection metric, and checkpoint\.select is 'last'"):
    config_lib.validate(config)


@pytest.mark.integration
def test_a_run_that_stops_improving_stops_delivers_its_best_epoch_and_trains_nothing_again(
    tiny_data_dir, tmp_path, capsys):
  # A learning rate too small to change a validation prediction: epoch 1 stays the best.
  config = config_lib.load(TINY, {"data.dir": str(tiny_data_dir), "num_epochs": 6,
                                  "optimizer.learning_rate": 1e-9,
                                  "early_stopping.patience": 2, "checkpoint.every_epochs": 2})
  summary = loop.train_and_evaluate(config, tmp_path / "run")
  lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3]
  assert summary["status"] == "finished" and summary["epochs"] == 3
  assert summary["selected_epoch"] == 1 and summary["selected_step"] == 16
  assert summary["stopped_early"] == ("stopped early at epoch 3: val_accuracy did not improve "
                                      "in 2 epochs since epoch 1")
  assert json.loads((tmp_path / "run" / "summary.json").read_text())["stopped_early"]
  assert "stopped early at epoch 3" in capsys.readouterr().out
  # The last state is kept though epoch 3 is no checkpoint epoch: the final test figures,
  # `checkpoint=latest` and a repeated command all see it.
  assert latest_checkpoint(tmp_path / "run")[0] == 48
  again = loop.train_and_evaluate(config, tmp_path / "run")  # Nothing left to train.
  assert (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() == lines
  assert again["test_accuracy"] == summary["test_accuracy"]
