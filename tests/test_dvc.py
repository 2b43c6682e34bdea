"""cnnjax as a stage of a real DVC pipeline (`cnnjax dvc init`), in a temporary git
repository: `dvc exp run -S` trains, `dvc exp show` lists each run's params and results,
an unchanged stage trains nothing, a bad field fails before DVC records anything."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, require

pytestmark = pytest.mark.integration  # Starts DVC, which trains in processes of its own.


def _run(repo: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
  env = dict(os.environ, DVC_NO_ANALYTICS="1",
             PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
  result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
  if ok:
    assert result.returncode == 0, result.stdout + result.stderr
  return result


def _dvc(repo, *args, ok=True):
  return _run(repo, sys.executable, "-m", "dvc", *args, ok=ok)


@pytest.fixture
def repo(tmp_path):
  require(importlib.util.find_spec("dvc") is not None and importlib.util.find_spec("dvclive")
          is not None, "dvc and dvclive are not installed: pip install -e '.[dvc]'")
  repo = tmp_path / "project"
  (repo / "configs").mkdir(parents=True)
  shutil.copy(ROOT / "configs" / "tiny.py", repo / "configs" / "tiny.py")
  _run(repo, "git", "init", "-q")
  _run(repo, "git", "config", "user.email", "test@example.com")
  _run(repo, "git", "config", "user.name", "test")
  _dvc(repo, "init", "-q")
  _run(repo, "git", "add", "-A")
  _run(repo, "git", "commit", "-qm", "a project")
  return repo


def _experiments(repo) -> dict[str, dict]:
  """{name: its params and metrics} from `dvc exp show --json`."""
  out = {}
  for baseline in json.loads(_dvc(repo, "exp", "show", "--json").stdout):
    for exp in baseline.get("experiments") or []:
      for rev in exp["revs"]:
        data = rev["data"]
        out[rev["name"]] = {"params": data["params"]["params.yaml"]["data"],
                            "metrics": data["metrics"]["dvclive/metrics.json"]["data"]}
  return out


def test_a_dvc_stage_trains_each_changed_experiment_and_shows_their_results(repo, tiny_data_dir):
  outside = _run(repo.parent, sys.executable, "-m", "cnnjax", "dvc", "init", "--config",
                 str(repo / "configs" / "tiny.py"), ok=False)
  assert outside.returncode == 2
  assert outside.stderr == (f"cnnjax dvc init: error: {repo.parent} is not inside a DVC "
                            f"repository: run `git init && dvc init` there first\n")
  _run(repo, sys.executable, "-m", "cnnjax", "dvc", "init", "--config", "configs/tiny.py",
       f"--config.data.dir={tiny_data_dir}", "--config.num_epochs=1")
  stage = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["train"]
  assert stage["cmd"] == ("cnnjax train --config configs/tiny.py --params params.yaml "
                          "--workdir runs/train --config.dvclive=dvclive")
  assert stage["deps"] == sorted([str(tiny_data_dir.resolve()), str(ROOT / "cnnjax"), "configs/tiny.py"])
  assert stage["params"] == [{"params.yaml": None}] and stage["outs"] == ["runs/train"]
  params = yaml.safe_load((repo / "params.yaml").read_text())
  assert params["num_epochs"] == 1 and params["data"]["dir"] == str(tiny_data_dir.resolve())
  _run(repo, "git", "add", "dvc.yaml", "params.yaml")
  _run(repo, "git", "commit", "-qm", "a cnnjax stage")

  summaries = {}
  for name, change in [("base", []), ("conv", ["-S", "model.conv_features=[6,8]"]),
                       ("lr", ["-S", "optimizer.learning_rate=0.02"])]:
    _dvc(repo, "exp", "run", "--name", name, *change)
    summaries[name] = json.loads((repo / "runs" / "train" / "summary.json").read_text())
    assert summaries[name]["status"] == "finished"
  run = json.loads((repo / "runs" / "train" / "run.json").read_text())
  assert run["overrides"]["optimizer.learning_rate"] == "params.yaml"
  assert run["overrides"]["dvclive"] == "command line"
  config = json.loads((repo / "runs" / "train" / "config.json").read_text())
  # `dvc exp run -S` changes the workspace: the third experiment keeps the second's width.
  assert config["model"]["conv_features"] == [6, 8]
  assert config["optimizer"]["learning_rate"] == 0.02

  experiments = _experiments(repo)
  assert set(experiments) == {"base", "conv", "lr"}
  for name, summary in summaries.items():
    assert experiments[name]["metrics"]["test_accuracy"] == summary["test_accuracy"], name
    assert experiments[name]["metrics"]["params"] == summary["params"], name
  assert experiments["base"]["params"]["model"]["conv_features"] == [4, 8]
  assert experiments["conv"]["params"]["model"]["conv_features"] == [6, 8]
  assert experiments["lr"]["params"]["optimizer"]["learning_rate"] == 0.02
  assert summaries["conv"]["params"] != summaries["base"]["params"]

  again = _dvc(repo, "exp", "run", "--name", "again")
  assert "Stage 'train' didn't change, skipping" in again.stdout
  assert json.loads((repo / "runs" / "train" / "run.json").read_text()) == run  # No session.

  bad = _dvc(repo, "exp", "run", "--name", "bad", "-S", "+model.conv_featurs=[9]", ok=False)
  assert bad.returncode != 0
  errors = [line for line in (bad.stdout + bad.stderr).splitlines()
            if line.startswith("cnnjax train")]
  assert len(errors) == 1 and errors[0].startswith(
      "cnnjax train: error: config.model.conv_featurs: unknown field (did you mean "
      "'conv_features'?)")
  assert errors[0].endswith(" (set by params.yaml: model.conv_featurs)")
  assert "bad" not in _experiments(repo)
