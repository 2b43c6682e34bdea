import json
import subprocess
import sys

import pytest

from cnnjax import cli
from conftest import ROOT

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


@pytest.mark.parametrize("args, message", [
    (["--config.optimizer.learnig_rate=0.1"], "learnig_rate"),
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
  assert "--config is required" in capsys.readouterr().err
  assert cli.main(["fly"]) == 2
  assert "unknown command 'fly'" in capsys.readouterr().err


def test_python_dash_m_prints_usage():
  out = subprocess.run([sys.executable, "-m", "cnnjax", "--help"], capture_output=True,
                       text=True, check=True).stdout
  assert "cnnjax COMMAND" in out and "train" in out
