"""Elastic resume: a run stopped on 8 devices (SIGTERM, or kill -9) resumes on 2 devices,
or under the other parallel mode, and ends where the uninterrupted 8-device run ends,
within float rounding; a different global batch stays refused."""
import json
import os
import signal
import subprocess
import sys

import pytest

from cnnjax import config as config_lib
from cnnjax.errors import EXIT_INTERRUPTED, WorkdirError
from cnnjax.train import loop
from helpers import ROOT, NUM_DEVICES, latest_checkpoint

pytestmark = pytest.mark.integration  # Starts processes and trains whole runs.

TINY = str(ROOT / "configs" / "tiny.py")


def _config(data_dir, **fields):
  return config_lib.load(TINY, {"data.dir": str(data_dir), "num_epochs": 3, **fields})


def _on_eight_devices(workdir, data_dir, pause):
  """A `cnnjax train` process on 8 devices, paused at `pause` (runs.failpoints)."""
  env = dict(os.environ, CNNJAX_PAUSE_AT=pause,
             XLA_FLAGS=f"--xla_force_host_platform_device_count={NUM_DEVICES}")
  proc = subprocess.Popen([sys.executable, "-m", "cnnjax", "train", "--config", TINY,
                           "--workdir", str(workdir), f"--config.data.dir={data_dir}",
                           "--config.num_epochs=3"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env)
  for line in proc.stderr:
    if f"paused at {pause}" in line:
      return proc
  raise AssertionError(f"{pause} never came (exit {proc.wait()})")


@pytest.fixture(scope="module")
def reference(tiny_data_dir, tmp_path_factory):
  """The uninterrupted run on 8 devices."""
  return loop.train_and_evaluate(_config(tiny_data_dir), tmp_path_factory.mktemp("el") / "ref")


@pytest.mark.parametrize("stop, fields", [
    (signal.SIGTERM, {"num_devices": 2}),
    (signal.SIGKILL, {"num_devices": 2, "parallel": "shard_map"}),
])
def test_a_run_stopped_on_8_devices_resumes_on_2_to_the_same_end(reference, tiny_data_dir,
                                                                 tmp_path, stop, fields):
  workdir = tmp_path / "run"
  proc = _on_eight_devices(workdir, tiny_data_dir, "step:20")
  proc.send_signal(stop)
  if stop == signal.SIGTERM:
    os.kill(proc.pid, signal.SIGCONT)  # Leaves the failpoint: it checkpoints and stops.
  code = proc.wait(timeout=120)
  assert code == (EXIT_INTERRUPTED if stop == signal.SIGTERM else -signal.SIGKILL)
  stopped_at = latest_checkpoint(workdir)[0]
  summary = loop.train_and_evaluate(_config(tiny_data_dir, **fields), workdir)
  assert summary["steps"] == reference["steps"] == 48 and stopped_at < 48
  assert summary["final_test_loss"] == pytest.approx(reference["final_test_loss"], abs=1e-5)
  assert summary["test_accuracy"] == reference["test_accuracy"]
  run = json.loads((workdir / "run.json").read_text())
  assert [len(run["devices"])] + [len(s["devices"]) for s in run["resumes"]] == [8, 2]


def test_a_different_global_batch_is_still_refused(reference, tiny_data_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = _on_eight_devices(workdir, tiny_data_dir, "step:5")
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  with pytest.raises(WorkdirError, match=r"holds a run with another config \(batch_size: 16 -> 32\)"):
    loop.train_and_evaluate(_config(tiny_data_dir, batch_size=32, num_devices=2), workdir)
