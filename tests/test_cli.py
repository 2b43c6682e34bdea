import json
import subprocess
import sys

import pytest

from cnnjax import cli
from helpers import ROOT

TINY = str(ROOT / "configs" / "tiny.py")


def _subcommands(parser, path=()):
  """(command path, its parser) for every command and sub-command of the parser."""
  for action in parser._actions:
    if action.choices and hasattr(action, "_name_parser_map"):
      for name, sub in action._name_parser_map.items():
        yield from _subcommands(sub, (*path, name))
      return
  yield path, parser


def test_every_command_lists_every_flag_and_takes_debug(capsys):
  commands = dict(_subcommands(cli.parser()))
  assert set(commands) == {("train",), ("exp", "show"), ("exp", "diff"), ("exp", "plot"),
                           ("exp", "reproduce"), ("sweep",), ("plan",), ("data", "convert"),
                           ("dvc", "init"), ("viz",), ("predict",), ("eval",)}
  for path, parser in commands.items():
    assert cli.main([*path, "-h"]) == 0
    text = capsys.readouterr().out
    flags = [s for a in parser._actions for s in a.option_strings]
    assert "--debug" in flags, path
    assert all(flag in text for flag in flags), (path, [f for f in flags if f not in text])
    if parser.get_default("overrides"):
      assert "--config.FIELD=VALUE" in text, path


def test_usage_errors_exit_2_with_argparse_messages(capsys):
  assert cli.main(["train", "--workdir", "x"]) == 2
  assert "the following arguments are required: --config" in capsys.readouterr().err
  assert cli.main(["train", "--config", TINY, "--workdir", "x", "--epochs=3"]) == 2
  assert ("cnnjax train: error: unrecognized argument '--epochs=3' (overrides are "
          "--config.FIELD=VALUE)") in capsys.readouterr().err
  assert cli.main(["exp", "show", "--config.seed=1"]) == 2  # Takes no overrides.
  assert "unrecognized arguments: --config.seed=1" in capsys.readouterr().err
  assert cli.main(["fly"]) == 2
  assert "invalid choice: 'fly'" in capsys.readouterr().err


def test_own_errors_are_one_line_or_a_traceback_with_debug_and_bugs_always_raise(
    tmp_path, capsys, monkeypatch):
  missing = str(tmp_path / "nothing")
  assert cli.main(["eval", missing]) == 2
  err = capsys.readouterr().err
  assert err == f"cnnjax eval: error: {missing} holds no config.json: not a run directory\n"
  assert cli.main(["eval", missing, "--debug"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("Traceback") and err.endswith("not a run directory\n")
  from cnnjax.exp import table
  monkeypatch.setattr(table, "show", lambda *a, **k: {}["a bug"])
  with pytest.raises(KeyError):  # Not a one-line "user error": a bug shows its traceback.
    cli.main(["exp", "show", str(tmp_path)])


@pytest.mark.integration  # Trains a run.
def test_train_command_with_overrides(tiny_data_dir, tmp_path, capsys):
  code = cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "run"),
                   f"--config.data.dir={tiny_data_dir}", "--config.num_epochs=1",
                   "--config.model.conv_features=(5, 8)"])
  out = capsys.readouterr().out
  assert code == 0
  assert "Total Parameters" in out and "finished: test accuracy" in out
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  assert config["num_epochs"] == 1 and config["model"]["conv_features"] == [5, 8]
  session = json.loads((tmp_path / "run" / "run.json").read_text())
  assert session["malloc"] == "left alone (config.keep_freed_memory=False or not CPU devices)"


@pytest.mark.parametrize("args, message", [
    (["--config.optimizer.learnig_rate=0.1"],
     "config.optimizer.learnig_rate: unknown field (did you mean 'learning_rate'?)"),
    (["--config.batch_size=many"], "config.batch_size: takes int values, got 'many'"),
    (["--config.batch_size=0"], "config.batch_size: must be >= 1, got 0"),
    (["--config.model.conv_features=(4, 8, 16, 32)"], "config.model.conv_features: 4 conv blocks"),
    (["--config.data.dir=/nonexistent"], "mnist IDX files not found: looked in /nonexistent"),
    (["--config.model.name=resnet", "--config.model.pool_size=3"],
     "config.model.pool_size: unknown field: model 'resnet' has batch_norm_momentum, "
     "conv_features, kernel_sizes"),
    (["--config.model.pool_size=3", "--config.model.name=mlp"],  # The name comes first.
     "config.model.pool_size: unknown field: model 'mlp' has dense_features, dropout_rate"),
    (["--config.data.source=ucr", "--config.data.download=False"],
     "config.data.download: unknown field: data source 'ucr' has dir, name, series_length, "
     "unequal_length, znorm beside the shared ones"),
])
def test_errors_are_one_line_naming_the_cause(args, message, tiny_data_dir, tmp_path, capsys):
  extra = [] if any("data.dir" in a for a in args) else [f"--config.data.dir={tiny_data_dir}"]
  code = cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "run"), *extra, *args])
  err = capsys.readouterr().err
  assert code == 2
  assert message in err
  assert "Traceback" not in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "run" / "config.json").exists()  # Before the run's records.


@pytest.mark.integration  # Starts processes.
def test_help_and_exp_show_start_without_jax(tmp_path):
  out = subprocess.run([sys.executable, "-m", "cnnjax", "--help"], capture_output=True,
                       text=True, check=True).stdout
  assert "COMMAND" in out and "train" in out and "sweep" in out
  probe = ("import sys; from cnnjax import cli; cli.main(sys.argv[1:]); "
           "print(sorted(m for m in ('jax', 'flax', 'orbax', 'tensorflow_datasets', 'grain') "
           "if m in sys.modules))")
  for args in (["-h"], ["exp", "show", str(tmp_path)]):
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", (args, done.stdout)


def _train_process(args, env_update, drop=()):
  import os
  env = {k: v for k, v in os.environ.items() if k not in drop}
  env.update(env_update)
  return subprocess.run([sys.executable, "-m", "cnnjax", "train", "--config", TINY, *args],
                        capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.integration  # Starts processes.
def test_xla_flags_of_the_command_win_over_config_cpu_devices(tiny_data_dir, tmp_path):
  common = [f"--config.data.dir={tiny_data_dir}", "--config.num_epochs=1",
            "--config.cpu_devices=2", "--config.num_devices=4"]
  done = _train_process(["--workdir", str(tmp_path / "env"), *common],
                        {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
  assert done.returncode == 0, done.stderr
  run = json.loads((tmp_path / "env" / "run.json").read_text())
  assert run["cpu_devices_set_by"] == "XLA_FLAGS=--xla_force_host_platform_device_count=4"
  assert len(run["devices"]) == 4
  refused = _train_process(["--workdir", str(tmp_path / "config"), *common], {},
                           drop=("XLA_FLAGS",))
  assert refused.returncode == 2
  assert refused.stderr.strip() == ("cnnjax train: error: config.num_devices: asks for 4 "
                                    "devices but this process has 2 (cpu, count set by "
                                    "config.cpu_devices=2); use 0 for all")
