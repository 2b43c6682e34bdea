"""Successive halving (`HALVING = hyper.halving(...)` in an experiment): the rungs, the
decisions and their file, bad setups, the table's statuses, config.pause_at_epoch, and
whole sweeps of 9 points on the local, Ray and SLURM launchers."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cnnjax import cli, saved_config
from cnnjax import config as config_lib
from cnnjax.errors import ConfigError, UsageError
from cnnjax.exp import halving, hyper, sweep, table
from cnnjax.runs import records
from helpers import ROOT, assert_same_run, sweep_command, synthetic_digits, write_idx

TINY = str(ROOT / "configs" / "tiny.py")
RATES = [0.001, 0.002, 0.004, 0.008, 0.016, 0.03, 0.06, 0.12, 0.25]


def test_rungs_take_one_eta_th_on_until_one_point_or_the_budget_is_left():
  h = hyper.halving(metric="val_accuracy", min_epochs=1, eta=3)
  assert halving.rungs(h, 9, 9) == [(1, 9), (3, 3), (9, 1)]
  assert halving.rungs(h, 27, 9) == [(1, 27), (3, 9), (9, 3)]  # The budget ends first.
  assert halving.rungs(h, 4, 9) == [(1, 4), (9, 1)]  # One left: straight to the end.
  assert halving.rungs(h, 12, 5) == [(1, 12), (3, 4), (5, 1)]  # The talk's ablation.
  assert halving.rungs(hyper.halving(min_epochs=2, eta=2), 8, 20) == [(2, 8), (4, 4), (8, 2), (20, 1)]
  assert halving.cost([(1, 9), (3, 3), (9, 1)], seeds=1) == 9 + 3 * 2 + 6
  assert halving.cost([(1, 12), (3, 4), (5, 1)], seeds=3) == 3 * (12 + 4 * 2 + 2)


def test_decisions_follow_the_metrics_direction_with_missing_values_last_and_ties_in_order():
  values = {"a": 0.5, "b": None, "c": 0.9, "d": 0.5, "e": 0.1}
  assert halving.decide(hyper.halving("val_accuracy"), values, 3) == ["c", "a", "d"]
  assert halving.decide(hyper.halving("val_loss"), values, 3) == ["e", "a", "d"]
  assert halving.decide(hyper.halving("val_loss"), values, 5)[-1] == "b"


def _configs(tiny_data_dir, n=9, **fields):
  return [config_lib.load(TINY, {"data.dir": str(tiny_data_dir), "num_epochs": 9, **fields,
                                 "optimizer.learning_rate": lr}) for lr in RATES[:n]]


def _groups(n):
  return {f"p{i}": [f"p{i}"] for i in range(n)}


@pytest.mark.parametrize("setup, n, fields, message", [
    (dict(metric="val_acc"), 9, {}, "HALVING.metric: runs do not record 'val_acc' at their "
     "evaluations: use one of val_accuracy, val_loss"),
    (dict(metric="test_accuracy"), 9, {}, "HALVING.metric: 'test_accuracy' is a test figure"),
    (dict(eta=1), 9, {}, "HALVING.eta: must be an integer >= 2"),
    (dict(min_epochs=10), 9, {}, r"HALVING.min_epochs: must be an integer in \[1, "
     r"config.num_epochs=9\], got 10"),
    (dict(eta=3), 2, {}, r"HALVING.eta: the experiment has 2 points \(seeds aside\), fewer "
     r"than eta=3"),
    (dict(), 9, {"data.validation_examples": 0, "checkpoint.select": "last"},
     "HALVING.metric: 'val_accuracy' needs a validation split"),
    (dict(metric="ema_val_loss"), 9, {}, "HALVING.metric: 'ema_val_loss' needs the moving "
     "average: set config.optimizer.ema_decay"),
    (dict(), 9, {"eval_every_epochs": 2, "num_epochs": 10}, r"HALVING.min_epochs: rungs end at "
     r"epochs \[1, 3\], where the runs do not evaluate \(config.eval_every_epochs=2\)"),
])
def test_a_setup_that_cannot_work_names_its_field(tiny_data_dir, setup, n, fields, message):
  with pytest.raises(UsageError, match=message):
    halving.check(hyper.halving(**setup), _configs(tiny_data_dir, n, **fields), _groups(n))


def test_points_with_different_budgets_are_refused(tiny_data_dir):
  configs = _configs(tiny_data_dir, 3) + _configs(tiny_data_dir, 3, num_epochs=5)
  with pytest.raises(UsageError, match=r"config.num_epochs: halving gives every point one "
                                       r"budget; the points train for \[5, 9\] epochs"):
    halving.check(hyper.halving(), configs, _groups(6))


def test_a_root_written_by_another_setup_is_refused_saying_what_changed(tmp_path):
  decisions = halving.Decisions(tmp_path, hyper.halving("val_loss", 1, 3), 9, _groups(9))
  decisions.record(0, 1, {f"p{i}": float(i) for i in range(9)}, ["p0", "p1", "p2"])
  stored = json.loads((tmp_path / "halving.json").read_text())
  assert stored["rungs"] == [{"rung": 0, "epoch": 1, "promoted": ["p0", "p1", "p2"],
                              "values": {f"p{i}": float(i) for i in range(9)}}]
  again = halving.Decisions(tmp_path, hyper.halving("val_loss", 1, 3), 9, _groups(9))
  assert again.get(0)["promoted"] == ["p0", "p1", "p2"] and again.get(1) is None
  with pytest.raises(UsageError, match=r"halving.json was written by another halving setup "
                                       r"\(eta 3 -> 2\): its decisions cannot be mixed"):
    halving.Decisions(tmp_path, hyper.halving("val_loss", 1, 2), 9, _groups(9))
  with pytest.raises(UsageError, match=r"\(metric 'val_loss' -> 'val_accuracy'\)"):
    halving.Decisions(tmp_path, hyper.halving("val_accuracy", 1, 3), 9, _groups(9))
  with pytest.raises(UsageError, match=r"\(other points or seeds\)"):
    halving.Decisions(tmp_path, hyper.halving("val_loss", 1, 3), 9, _groups(10))


def test_a_value_is_the_metric_at_the_rungs_epoch_or_none(tmp_path):
  from cnnjax.runs.reader import read_run

  def run(name, status, losses, **summary):
    path = tmp_path / name
    path.mkdir()
    (path / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": i + 1, "step": 10 * (i + 1), "val_loss": v}) + "\n"
        for i, v in enumerate(losses)))
    records.write_json(path / "summary.json", {"status": status, **summary})
    return read_run(path)

  assert halving.value(run("paused", "paused", [0.9, 0.7, 0.5]), 3, "val_loss") == 0.5
  assert halving.value(run("later", "paused", [0.9, 0.7, 0.5]), 1, "val_loss") == 0.9
  assert halving.value(run("short", "paused", [0.9]), 3, "val_loss") is None
  assert halving.value(run("failed", "failed", [0.9, 0.7, 0.5]), 3, "val_loss") is None
  early = run("early", "finished", [0.9, 0.7], stopped_early="stopped early at epoch 2")
  assert halving.value(early, 3, "val_loss") == 0.7  # Its last evaluation.
  assert halving.value(run("nan", "paused", [0.9, float("nan")]), 2, "val_loss") is None
  members = [run("s0", "paused", [0.4]), run("s1", "paused", [0.6])]
  assert halving.mean_value(members, 1, "val_loss") == 0.5
  assert halving.mean_value(members + [run("s2", "failed", [])], 1, "val_loss") is None


def _fake_point(path, status, epochs, seed=0, lr=0.05):
  config = config_lib.to_dict(config_lib.load(TINY, {"seed": seed, "optimizer.learning_rate": lr,
                                                     "pause_at_epoch": epochs * (status == "paused")}))
  records.write_json(path / "config.json", config)
  summary = {"status": status, "epochs": epochs, "val_accuracy": 0.5 + lr}
  if status == "paused":
    summary["paused_at_epoch"] = epochs
  else:
    summary["test_accuracy"] = 0.9
  records.write_json(path / "summary.json", summary)


def test_exp_show_says_where_a_point_stopped_and_lists_it_below_the_finished_ones(tmp_path):
  for seed in (0, 1):
    _fake_point(tmp_path / f"lr=0.01,seed={seed}", "paused", 1, seed, 0.01)
    _fake_point(tmp_path / f"lr=0.02,seed={seed}", "paused", 3, seed, 0.02)
    _fake_point(tmp_path / f"lr=0.03,seed={seed}", "finished", 9, seed, 0.03)
  records.write_json(tmp_path / "halving.json", {"rungs": [{"epoch": 1}, {"epoch": 3}, {"epoch": 9}]})
  shown = table.show([tmp_path])
  assert [(r["run"], r["status"]) for r in shown.rows] == [
      ("lr=0.03,seed=0", "finished"), ("lr=0.03,seed=1", "finished"),
      ("lr=0.02,seed=0", "stopped at rung 1 (epoch 3)"), ("lr=0.02,seed=1", "stopped at rung 1 (epoch 3)"),
      ("lr=0.01,seed=0", "stopped at rung 0 (epoch 1)"), ("lr=0.01,seed=1", "stopped at rung 0 (epoch 1)")]
  assert "pause_at_epoch" not in shown.columns  # The status says it.
  by_val = shown.sort("val_accuracy")  # Ascending, yet the finished points stay on top.
  assert [r["status"] for r in by_val.rows][:2] == ["finished", "finished"]
  assert [r["run"] for r in by_val.rows][2:] == ["lr=0.01,seed=0", "lr=0.01,seed=1",
                                                 "lr=0.02,seed=0", "lr=0.02,seed=1"]
  grouped = table.show([tmp_path], aggregate="seed")
  assert [(r["run"], r["n"], r["status"]) for r in grouped.rows] == [
      ("lr=0.03,seed=*", 2, "finished"), ("lr=0.02,seed=*", 2, "stopped at rung 1 (epoch 3)"),
      ("lr=0.01,seed=*", 2, "stopped at rung 0 (epoch 1)")]
  (tmp_path / "halving.json").unlink()  # A paused run outside a halving sweep.
  assert table.show([tmp_path]).rows[-1]["status"] == "paused at epoch 1"


def test_pause_at_epoch_is_checked(tiny_data_dir):
  config = config_lib.load(TINY, {"data.dir": str(tiny_data_dir), "pause_at_epoch": 3})
  with pytest.raises(ConfigError, match=r"config.pause_at_epoch: must be in \[0, num_epochs=2\]"):
    config_lib.validate(config)
  config = config_lib.load(TINY, {"data.dir": str(tiny_data_dir), "num_epochs": 4,
                                  "pause_at_epoch": 1, "eval_every_epochs": 2})
  with pytest.raises(ConfigError, match="config.pause_at_epoch: pauses after an evaluation"):
    config_lib.validate(config)


def _experiment(path, data_dir, metric="val_loss", extra=""):
  path.write_text(textwrap.dedent(f"""
      from cnnjax import config as config_lib
      from cnnjax.exp import hyper

      HALVING = hyper.halving(metric={metric!r}, min_epochs=1, eta=3)

      def get_config():
        return config_lib.load({TINY!r}, {{"data.dir": {str(data_dir)!r}, "num_epochs": 9{extra}}})

      def get_points():
        return hyper.sweep("optimizer.learning_rate", {RATES!r})
  """))
  return path


def test_dry_run_prints_the_rungs_and_their_cost(tiny_data_dir, tmp_path, capsys):
  experiment = _experiment(tmp_path / "nine.py", tiny_data_dir)
  assert cli.main(["sweep", str(experiment), "--root", str(tmp_path / "r"), "--dry-run",
                   "--seeds", "2"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[-5:] == [
      "successive halving on val_loss (lower is better), eta 3, from 1 epoch:",
      "  rung 0: 9 points x 2 seeds to epoch 1 (18 epochs)",
      "  rung 1: 3 points x 2 seeds to epoch 3 (12 epochs)",
      "  rung 2: 1 point x 2 seeds to epoch 9 (12 epochs)",
      "  42 epochs in all, 26% of the full grid's 162"]
  assert not (tmp_path / "r").exists()
  bad = _experiment(tmp_path / "bad.py", tiny_data_dir, metric="test_loss")
  assert cli.main(["sweep", str(bad), "--root", str(tmp_path / "r")]) == 2
  assert "HALVING.metric: 'test_loss' is a test figure" in capsys.readouterr().err
  assert not (tmp_path / "r").exists()  # Refused before anything trains.


@pytest.mark.integration
def test_a_paused_run_resumed_to_the_end_equals_a_run_that_never_paused(tiny_data_dir, tmp_path):
  from cnnjax.train import loop
  fields = {"data.dir": str(tiny_data_dir), "num_epochs": 3}
  paused = loop.train_and_evaluate(config_lib.load(TINY, {**fields, "pause_at_epoch": 1}),
                                   tmp_path / "run")
  assert paused["status"] == "paused" and paused["paused_at_epoch"] == 1
  assert "test_accuracy" not in paused  # The test split is read only at the end.
  loop.train_and_evaluate(config_lib.load(TINY, fields), tmp_path / "run")
  loop.train_and_evaluate(config_lib.load(TINY, fields), tmp_path / "straight")
  assert_same_run(tmp_path / "run", tmp_path / "straight", 48)


# The sweeps: configs/tiny.py with a one-cycle schedule over 9 epochs, 9 learning rates,
# decided on val_loss (tiny's validation accuracy saturates).

def _sweep(experiment, root, *args, env=None):
  return sweep_command(experiment, root, *args, env=env, timeout=900)


def _epochs(root):
  return sorted(len((root / sweep.point_name({"optimizer.learning_rate": lr}) / "metrics.jsonl")
                    .read_text().splitlines()) for lr in RATES)


def _decisions(root):
  return [{k: r[k] for k in ("epoch", "values", "promoted", "delivered") if k in r}
          for r in json.loads((root / "halving.json").read_text())["rungs"]]


@pytest.fixture(scope="module")
def halved(tiny_data_dir, tmp_path_factory):
  """The 9-point halving sweep, stopped by SIGTERM in rung 1 and run again to its end."""
  folder = tmp_path_factory.mktemp("halving")
  experiment = _experiment(folder / "nine.py", tiny_data_dir)
  root = folder / "root"
  first = subprocess.Popen([sys.executable, "-m", "cnnjax", "sweep", str(experiment), "--root",
                            str(root), "--workers", "2"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
  deadline = time.time() + 600
  while not any(len(halving.rung_epochs(root)) == 1 and (p / "metrics.jsonl").is_file()
                and len((p / "metrics.jsonl").read_text().splitlines()) >= 2
                for p in root.glob("learning_rate=*")):
    assert time.time() < deadline and first.poll() is None, first.stdout.read()
    time.sleep(0.05)
  os.killpg(first.pid, signal.SIGTERM)  # A rung-1 point is between epochs 1 and 3.
  stopped = first.communicate(timeout=300)[0]
  assert first.returncode == 130, stopped
  assert halving.rung_epochs(root) == [1]  # Rung 1 was not decided.
  finished = _sweep(experiment, root, "--workers", "2")
  assert finished.returncode == 0, finished.stdout + finished.stderr
  return experiment, root, stopped, finished.stdout


@pytest.mark.integration
def test_halving_trains_what_each_rung_promotes_and_delivers_the_plain_run(halved, tmp_path):
  experiment, root, stopped, out = halved
  assert _epochs(root) == [1] * 6 + [3] * 2 + [9]
  rungs = _decisions(root)
  assert [r["epoch"] for r in rungs] == [1, 3, 9]
  assert [len(r["values"]) for r in rungs] == [9, 3, 1]
  assert rungs[0]["promoted"] == sorted(rungs[0]["values"], key=rungs[0]["values"].get)[:3]
  assert rungs[1]["promoted"] == sorted(rungs[1]["values"], key=rungs[1]["values"].get)[:1]
  survivor = rungs[2]["delivered"][0]
  assert rungs[1]["promoted"] == [survivor]
  # The values are the metrics records' val_loss at the rung's epoch, never a test figure.
  for rung in rungs:
    for name, value in rung["values"].items():
      lines = [json.loads(l) for l in (root / name / "metrics.jsonl").read_text().splitlines()]
      assert value == next(r["val_loss"] for r in lines if r["epoch"] == rung["epoch"])
  for name in rungs[0]["values"]:
    summary = json.loads((root / name / "summary.json").read_text())
    assert ("test_accuracy" in summary) == (name == survivor)  # Stopped points never test.
  # The survivor, resumed twice (and once more after the stop), equals a plain run of its
  # config, pinned to one CPU slot as the sweep's points are.
  from cnnjax.exp.launchers.local import slots
  saved = json.loads((root / survivor / "point_config.json").read_text())
  assert saved["pause_at_epoch"] == 0
  plain = tmp_path / "plain"
  run = subprocess.run([sys.executable, "-m", "cnnjax", "train", "--config",
                        saved_config.spec(root / survivor / "point_config.json"), "--workdir",
                        str(plain)],
                       capture_output=True, text=True, env={**os.environ, **slots(2).get()})
  assert run.returncode == 0, run.stderr
  assert_same_run(root / survivor, plain, 144)
  # The table: the survivor first, then the stopped points, later rungs first.
  statuses = [r["status"] for r in table.show([root]).rows]
  assert statuses == (["finished"] + ["stopped at rung 1 (epoch 3)"] * 2
                      + ["stopped at rung 0 (epoch 1)"] * 6)
  assert f"rung 1 promotes {survivor} (val_loss " in out
  # Running it again trains nothing.
  again = _sweep(experiment, root, "--workers", "2")
  assert again.returncode == 0, again.stderr
  assert "running" not in again.stdout and again.stdout.count("skipped") == 9 + 3 + 1
  assert _decisions(root) == rungs


@pytest.mark.integration
@pytest.mark.parametrize("launcher", ["ray", "slurm"])
def test_every_launcher_makes_the_same_decisions_and_no_test_label_changes_one(
    launcher, halved, tiny_data_dir, tmp_path, request):
  """Ray on a copy of the data whose test labels are permuted (the decisions read no test
  figure), SLURM on the same data (the same table too)."""
  experiment, root, _, _ = halved
  if launcher == "ray":
    env, args = request.getfixturevalue("ray_env"), ["--resources", "cpu=1"]
    data = shutil.copytree(tiny_data_dir, tmp_path / "data")
    _, labels = synthetic_digits(60, 1)  # As helpers.write_idx_folder wrote them.
    write_idx(data / "t10k-labels-idx1-ubyte.gz", np.random.default_rng(0).permutation(labels))
    experiment = _experiment(tmp_path / "nine.py", data)
  else:
    request.getfixturevalue("slurm")
    env, args = {}, ["--max-parallel", "2"]
  other = tmp_path / "root"
  run = _sweep(experiment, other, "--launcher", launcher, *args, env=env)
  assert run.returncode == 0, run.stdout + run.stderr
  assert _decisions(other) == _decisions(root)
  assert _epochs(other) == _epochs(root)
  shown = lambda r: [{k: v for k, v in row.items() if k not in ("started", "duration")
                      and ("test" not in k or launcher == "slurm") and k != "wall_seconds"
                      and k != "images_per_second" and k != "data.dir"}
                     for row in table.show([r]).rows]
  assert shown(other) == shown(root)
