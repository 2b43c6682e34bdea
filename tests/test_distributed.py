"""Two processes with 4 CPU devices each (gloo) train exactly as one process with 8."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from cnnjax import config as config_lib
from cnnjax.train import loop
from conftest import ROOT, latest_checkpoint

TINY = str(ROOT / "configs" / "tiny.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _latest_step(workdir):
  return latest_checkpoint(workdir)[0]


def _latest(workdir):
  return latest_checkpoint(workdir)[1]


def _two_processes(workdir, data_dir, mode, pause=""):
  port = _free_port()
  procs = []
  for pid in range(2):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               CNNJAX_COORDINATOR=f"127.0.0.1:{port}", CNNJAX_NUM_PROCESSES="2",
               CNNJAX_PROCESS_ID=str(pid), CNNJAX_PAUSE_AT=pause)
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "cnnjax", "train", "--config", TINY, "--workdir", str(workdir),
         f"--config.data.dir={data_dir}", f"--config.parallel={mode}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  return procs


@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
def test_two_processes_of_four_devices_equal_one_process_of_eight(mode, tiny_data_dir, tmp_path):
  overrides = {"data.dir": str(tiny_data_dir), "parallel": mode}
  loop.train_and_evaluate(config_lib.load(TINY, overrides), tmp_path / "one")
  if mode == "pmap":  # Both processes killed after their first checkpoint: resume below.
    procs = _two_processes(tmp_path / "two", tiny_data_dir, mode, pause="checkpoint:1")
    for proc in procs:
      for line in proc.stdout:
        if "paused at checkpoint:1" in line:
          break
    for proc in procs:
      proc.kill()
      proc.wait()
    assert _latest_step(tmp_path / "two") == 16
  procs = _two_processes(tmp_path / "two", tiny_data_dir, mode)
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  run = json.loads((tmp_path / "two" / "run.json").read_text())
  assert run["processes"] == 2 and run["global_devices"] == 8
  a, b = _latest(tmp_path / "one"), _latest(tmp_path / "two")
  diff = max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a["state"]),
                                                          jax.tree.leaves(b["state"])))
  print(f"max |param| difference, 2 processes x 4 devices vs 1 x 8, {mode}: {diff:.3g}")
  assert diff <= 1e-5
  lines = lambda w: [json.loads(l) for l in (w / "metrics.jsonl").read_text().splitlines()]
  for x, y in zip(lines(tmp_path / "one"), lines(tmp_path / "two")):
    assert x["step"] == y["step"] and abs(x["val_accuracy"] - y["val_accuracy"]) < 1e-6
    assert abs(x["train_loss"] - y["train_loss"]) < 1e-5
