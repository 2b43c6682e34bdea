import json
import subprocess
import sys

import pytest

from cnnjax import cli
from helpers import ROOT

pytestmark = pytest.mark.integration  # Starts processes or trains whole runs.

TINY = str(ROOT / "configs" / "tiny.py")


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
])
def test_errors_are_one_line_naming_the_cause(args, message, tiny_data_dir, tmp_path, capsys):
  extra = [] if any("data.dir" in a for a in args) else [f"--config.data.dir={tiny_data_dir}"]
  code = cli.main(["train", "--config", TINY, "--workdir", str(tmp_path / "run"), *extra, *args])
  err = capsys.readouterr().err
  assert code == 2
  assert message in err
  assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_flags_and_unknown_command(capsys):
  assert cli.main(["train", "--workdir", "x"]) == 2
  assert "required: --config" in capsys.readouterr().err
  assert cli.main(["train", "--config", TINY, "--workdir", "x", "--epochs=3"]) == 2
  assert "unrecognized argument '--epochs=3'" in capsys.readouterr().err
  assert cli.main(["fly"]) == 2
  assert "unknown command 'fly'" in capsys.readouterr().err


def test_python_dash_m_prints_usage():
  out = subprocess.run([sys.executable, "-m", "cnnjax", "--help"], capture_output=True,
                       text=True, check=True).stdout
  assert "cnnjax COMMAND" in out and "train" in out


def _train_process(args, env_update, drop=()):
  import os
  env = {k: v for k, v in os.environ.items() if k not in drop}
  env.update(env_update)
  return subprocess.run([sys.executable, "-m", "cnnjax", "train", "--config", TINY, *args],
                        capture_output=True, text=True, env=env, timeout=300)


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
