"""Config fields from a YAML params file (`--params`, DVC's params.yaml): types, nesting,
precedence over nothing but the config file, and one-line errors naming file and key; the
DVCLive writer's files as a function of the run's records."""
import importlib.util
import json
import textwrap

import pytest
import yaml

from cnnjax import cli
from cnnjax import config as config_lib
from cnnjax.errors import UsageError
from helpers import ROOT, require

TINY = str(ROOT / "configs" / "tiny.py")


def _write(tmp_path, text: str, name="params.yaml"):
  path = tmp_path / name
  path.write_text(textwrap.dedent(text))
  return path


def _args(*argv):
  args, args.extra = cli.parser().parse_known_args(["train", "--config", TINY, "--workdir", "w",
                                                    *argv])
  return args


def test_yaml_values_are_typed_nested_or_dotted_and_lists_become_tuples(tmp_path):
  path = _write(tmp_path, """\
      seed: 3
      optimizer:
        learning_rate: 1e-3      # YAML 1.1 reads this as text: typed as the field's float
        nesterov: true
      optimizer.momentum: 0.5    # a dotted key is a field too
      model:
        conv_features: [6, 12]
        kernel_sizes: [[3, 3], [5, 5]]
      data:
        name: mnist
  """)
  overrides = config_lib.params_file_overrides(path)
  assert overrides == {"seed": 3, "optimizer.learning_rate": "1e-3", "optimizer.nesterov": True,
                       "optimizer.momentum": 0.5, "model.conv_features": (6, 12),
                       "model.kernel_sizes": ((3, 3), (5, 5)), "data.name": "mnist"}
  config = config_lib.load(TINY, overrides)
  assert config.seed == 3 and config.optimizer.learning_rate == 0.001
  assert config.optimizer.nesterov is True and config.optimizer.momentum == 0.5
  assert config.model.conv_features == (6, 12)
  assert config.model.kernel_sizes == ((3, 3), (5, 5))
  assert config_lib.params_file_overrides(_write(tmp_path, "", "empty.yaml")) == {}


def test_the_command_line_wins_over_the_file_and_origins_say_which(tmp_path):
  path = _write(tmp_path, "seed: 3\nnum_epochs: 4\nmodel: {conv_features: [6, 12]}\n")
  args = _args("--params", str(path), "--config.seed=7", "--config.batch_size", "8")
  overrides = cli._overrides(args)
  assert overrides == {"seed": "7", "num_epochs": 4, "model.conv_features": (6, 12),
                       "batch_size": "8"}
  assert args.origins == {"seed": "command line", "num_epochs": str(path),
                          "model.conv_features": str(path), "batch_size": "command line"}
  config = config_lib.load(TINY, overrides)
  assert (config.seed, config.num_epochs, config.batch_size) == (7, 4, 8)


@pytest.mark.parametrize("text, message", [
    ("model: [unclosed\n", "not a YAML file (line 2): expected ',' or ']'"),
    ("- seed\n- 3\n", "holds a YAML list, not a mapping of config fields"),
    ("model:\n  1: 3\n", "key 1 is not a config field name"),
])
def test_a_file_that_is_no_mapping_of_fields_is_a_usage_error_naming_it(tmp_path, text, message):
  path = _write(tmp_path, text)
  with pytest.raises(UsageError) as e:
    config_lib.params_file_overrides(path)
  assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
  with pytest.raises(UsageError, match="cannot read the params file: No such file"):
    config_lib.params_file_overrides(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text, error", [
    ("model:\n  conv_featurs: [9, 16]\n",
     "config.model.conv_featurs: unknown field (did you mean 'conv_features'?)"),
    ("batch_size: sixteen\n", "config.batch_size: takes int values, got 'sixteen'"),
    ("optimizer: {learning_rate: -1.0}\n", "config.optimizer.learning_rate: must be a positive number, got -1.0"),
    ("modl: {conv_features: [9]}\n", "config.modl: unknown field (did you mean 'model'?)"),
])
def test_a_bad_field_in_the_file_is_one_line_naming_file_and_key_before_training(
    tmp_path, capsys, text, error):
  path = _write(tmp_path, text)
  key = next(iter(config_lib.params_file_overrides(path)))
  workdir = tmp_path / "run"
  assert cli.main(["train", "--config", TINY, "--workdir", str(workdir), "--params", str(path)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith(f"cnnjax train: error: {error}")
  assert err.endswith(f" (set by {path}: {key})\n")
  assert not workdir.exists()


def test_a_bad_field_given_on_the_command_line_names_no_file(tmp_path, capsys):
  path = _write(tmp_path, "batch_size: 8\n")
  assert cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "run"), "--params",
                   str(path), "--config.batch_size=0"]) == 2
  assert capsys.readouterr().err == "cnnjax train: error: config.batch_size: must be >= 1, got 0\n"


def test_params_yaml_of_a_config_gives_that_config_back(tmp_path):
  from cnnjax.exp import dvc
  for name in ("mnist_talk", "mnist", "ucr_resnet", "volumes_3d"):
    config = config_lib.load(str(ROOT / "configs" / f"{name}.py"))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(dvc.params_values(config), sort_keys=False))
    again = config_lib.load(str(ROOT / "configs" / "tiny.py"), config_lib.params_file_overrides(path))
    assert config_lib.to_dict(again) == config_lib.to_dict(config), name


def _records(n):
  return [{"step": 4 * e, "epoch": e, "train_loss": 1.0 / e, "train_accuracy": e / 8,
           "val_loss": 1.5 / e, "val_accuracy": e / 4, "images_per_second": 100.0 * e}
          for e in range(1, n + 1)]


def _files(folder):
  return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dvclive_files_are_the_runs_records_and_a_resumed_session_rewrites_the_same(
    tmp_path, monkeypatch):
  require(importlib.util.find_spec("dvclive") is not None,
          "dvclive is not installed: pip install -e '.[dvc]'")
  from cnnjax.runs.live import LiveWriter
  monkeypatch.chdir(tmp_path)  # Outside any DVC repository.
  config = {"seed": 0, "model": {"conv_features": [8, 16]}}
  summary = {"status": "finished", "test_accuracy": 0.625, "val_accuracy": 0.5, "epochs": 3,
             "input_shape": [28, 28, 1], "best_val_accuracy": 0.75}
  whole = LiveWriter("whole", config, [])
  for record in _records(3):
    whole.epoch(record)
  whole.end(summary)
  # A session that ran epochs 1-2 and 3 was lost; the next one resumed after epoch 1.
  first = LiveWriter("resumed", config, [])
  for record in _records(3):
    first.epoch(record)
  resumed = LiveWriter("resumed", config, _records(1))
  for record in _records(3)[1:]:
    resumed.epoch(record)
  resumed.end(summary)
  files = _files(tmp_path / "whole")
  assert files == _files(tmp_path / "resumed")
  assert files["plots/metrics/val_accuracy.tsv"] == "step\tval_accuracy\n1\t0.25\n2\t0.5\n3\t0.75\n"
  assert yaml.safe_load(files["params.yaml"]) == config
  metrics = json.loads(files["metrics.json"])
  # The last epoch's metrics, then the run's summary (val_accuracy: the delivered epoch's).
  assert metrics == {"train_loss": 1 / 3, "train_accuracy": 0.375, "val_loss": 0.5,
                     "val_accuracy": 0.5, "images_per_second": 300.0, "step": 3,
                     "test_accuracy": 0.625, "epochs": 3, "best_val_accuracy": 0.75}


def test_dvclive_needs_dvclive_installed_and_no_sweep_logs_to_it(tiny_config, monkeypatch):
  from cnnjax.errors import ConfigError
  from cnnjax.exp import sweep
  with pytest.raises(ConfigError, match=r"^config.dvclive: the points of a sweep would all log"):
    sweep.point_config(tiny_config, {"seed": 1}, {"dvclive": "dvclive"})
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "dvclive" else find_spec(name, *a))
  with pytest.raises(ConfigError, match=r"^config.dvclive: logging through DVCLive needs it "
                     r"installed: pip install -e '.\[dvc\]'$"):
    config_lib.validate(config_lib.with_overrides(tiny_config, {"dvclive": "dvclive"}))
