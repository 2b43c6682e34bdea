"""Whole tiny runs with the research techniques: fine-tuning from a run with frozen
layers, the moving average delivered and resumed after kill -9, a profiled window."""
import hashlib
import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from cnnjax import config as config_lib
from cnnjax import load_run, tree_paths
from cnnjax.train import loop
from helpers import ROOT, assert_same_run, latest_checkpoint

pytestmark = pytest.mark.integration  # Trains whole runs, starts processes.

TINY = str(ROOT / "configs" / "tiny.py")


def _config(data_dir, **fields):
  return config_lib.load(TINY, {"data.dir": str(data_dir), "num_epochs": 1, **fields})


@pytest.fixture(scope="module")
def source(tiny_data_dir, tmp_path_factory):
  """A run on classes 0 and 1 that delivers its moving average of the weights."""
  workdir = tmp_path_factory.mktemp("source") / "run"
  loop.train_and_evaluate(_config(tiny_data_dir, **{
      "data.classes": (0, 1), "optimizer.ema_decay": 0.9,
      "checkpoint.select": "ema_val_accuracy"}), workdir)
  return workdir


def test_the_moving_average_is_evaluated_and_delivered(source):
  summary = json.loads((source / "summary.json").read_text())
  line = json.loads((source / "metrics.jsonl").read_text().splitlines()[-1])
  assert {"val_accuracy", "ema_val_accuracy", "ema_val_loss"} <= set(line)
  assert summary["checkpoint_select"] == "ema_val_accuracy"
  assert summary["ema_val_accuracy"] == line["ema_val_accuracy"]
  # The delivered model (eval, predict, viz) is the moving average, whose test accuracy
  # the summary reports, beside the last raw parameters'.
  assert summary["test_accuracy"] == summary["final_ema_test_accuracy"]
  step, arrays = latest_checkpoint(source)
  run = load_run(source)
  for path, leaf in tree_paths.leaves(run.variables["params"]).items():
    np.testing.assert_array_equal(leaf, tree_paths.leaves(arrays["state"]["ema"]["params"])[path])
  assert not np.array_equal(run.variables["params"]["classifier"]["kernel"],
                            arrays["state"]["params"]["classifier"]["kernel"])


def test_fine_tuning_loads_the_source_skips_the_head_and_keeps_frozen_layers(source, tiny_data_dir,
                                                                            tmp_path):
  frozen = ("conv*", "bn*")
  config = _config(tiny_data_dir, **{"data.classes": (2, 3, 1), "init.from_run": str(source),
                                     "init.skip": ("classifier",), "optimizer.frozen": frozen})
  loop.train_and_evaluate(config, tmp_path / "tuned")
  delivered = load_run(source).variables
  start = json.loads((tmp_path / "tuned" / "run.json").read_text())["init"]
  selected = json.loads((source / "summary.json").read_text())["selected_step"]
  assert (start["from_run"], start["checkpoint"], start["step"]) == (str(source.resolve()), "selected", selected)
  assert start["skipped"] == ["params/classifier/bias", "params/classifier/kernel"]
  digest = hashlib.sha256()  # What was loaded: every array but the skipped head's.
  for collection in ("batch_stats", "params"):
    for path, leaf in tree_paths.leaves(delivered[collection]).items():
      if not path.startswith("classifier"):
        digest.update(f"{collection}/{path}".encode() + b"\0" + np.asarray(leaf).tobytes())
  assert start["sha256"] == digest.hexdigest()
  _, tuned = latest_checkpoint(tmp_path / "tuned")
  ours, theirs = tree_paths.leaves(tuned["state"]["params"]), tree_paths.leaves(delivered["params"])
  for path in ours:
    if tree_paths.matches(path, frozen):
      np.testing.assert_array_equal(ours[path], theirs[path])  # Bit for bit.
    elif not path.startswith("classifier"):
      assert not np.array_equal(ours[path], theirs[path]), path
  assert ours["classifier/kernel"].shape == (16, 3)


def test_a_run_that_does_not_fit_the_source_fails_naming_both_shapes(source, tiny_data_dir,
                                                                      tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "cnnjax", "train", "--config", TINY, "--workdir", str(tmp_path / "w"),
       f"--config.data.dir={tiny_data_dir}", f"--config.init.from_run={source}"],
      capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert ("config.init.from_run: " in result.stderr
          and "params/classifier/kernel: source (16, 2) vs model (16, 4)" in result.stderr)
  assert [p.name for p in (tmp_path / "w").iterdir()] == [".lock"]


def test_a_moving_average_run_killed_with_9_resumes_to_the_uninterrupted_run(tiny_data_dir,
                                                                             tmp_path):
  fields = ["--config.optimizer.ema_decay=0.95", "--config.num_epochs=2"]
  command = [sys.executable, "-m", "cnnjax", "train", "--config", TINY,
             f"--config.data.dir={tiny_data_dir}", *fields]
  reference = subprocess.run(command + ["--workdir", str(tmp_path / "reference")],
                             capture_output=True, text=True, timeout=300)
  assert reference.returncode == 0, reference.stderr
  killed = tmp_path / "killed"
  proc = subprocess.Popen(command + ["--workdir", str(killed)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True,
                          env={**__import__("os").environ, "CNNJAX_PAUSE_AT": "step:20"})
  for line in proc.stderr:
    if "paused at step:20" in line:
      break
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert latest_checkpoint(killed)[0] == 16  # The epoch's checkpoint; steps 17-20 are lost.
  resumed = subprocess.run(command + ["--workdir", str(killed)], capture_output=True, text=True,
                           timeout=300)
  assert resumed.returncode == 0, resumed.stderr
  assert_same_run(killed, tmp_path / "reference", step=32)  # Moving average included.
  assert "ema" in latest_checkpoint(killed)[1]["state"]


def test_a_moving_average_trains_under_shard_map_on_one_device(tiny_data_dir, tmp_path):
  """The average starts as copies of the weights: the step donates the whole state, and
  one buffer in two leaves would be donated twice."""
  summary = loop.train_and_evaluate(_config(tiny_data_dir, **{
      "parallel": "shard_map", "num_devices": 1, "optimizer.ema_decay": 0.9}), tmp_path / "r")
  assert summary["status"] == "finished" and summary["final_ema_test_accuracy"] > 0


def test_a_profiled_run_leaves_a_trace_for_tensorboard(tiny_data_dir, tmp_path):
  loop.train_and_evaluate(_config(tiny_data_dir, **{"profile.start_step": 3,
                                                    "profile.num_steps": 2}), tmp_path / "p")
  traces = list((tmp_path / "p" / "profile" / "plugins" / "profile").glob("*/*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0
  assert not (tmp_path / "unprofiled").exists()
  loop.train_and_evaluate(_config(tiny_data_dir), tmp_path / "plain")
  assert not (tmp_path / "plain" / "profile").exists()  # Off by default.
