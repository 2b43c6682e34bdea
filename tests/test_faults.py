"""Fault injection with real processes and real signals: nothing may be lost.

kill -9 inside a step, an evaluation and a checkpoint write, then the same command
again, must end exactly (bit for bit) where an uninterrupted run ends.
"""
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from cnnjax import cli
from cnnjax import config as config_lib
from cnnjax.errors import EXIT_INTERRUPTED
from cnnjax.train import loop, steps
from helpers import ROOT, assert_same_run, latest_checkpoint, write_idx_folder

pytestmark = pytest.mark.integration  # Starts processes or trains whole runs.

TINY = str(ROOT / "configs" / "tiny.py")


def _command(workdir, data_dir, *extra):
  return [sys.executable, "-m", "cnnjax", "train", "--config", TINY, "--workdir", str(workdir),
          f"--config.data.dir={data_dir}", "--config.num_epochs=3", *extra]


def _start(workdir, data_dir, pause=None, *extra):
  env = dict(os.environ, CNNJAX_PAUSE_AT=pause or "")
  return subprocess.Popen(_command(workdir, data_dir, *extra), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(proc, marker, timeout=120):
  """Reads the child's stderr until a line holds `marker`."""
  deadline = time.time() + timeout
  seen = []
  while time.time() < deadline:
    ready, _, _ = select.select([proc.stderr], [], [], 1.0)
    if ready:
      line = proc.stderr.readline()
      seen.append(line)
      if marker in line:
        return line
      if not line and proc.poll() is not None:
        break
  raise AssertionError(f"{marker!r} never came; stderr: {''.join(seen)[-2000:]}")





@pytest.fixture(scope="module")
def reference(tiny_data_dir, tmp_path_factory):
  """An uninterrupted 3-epoch run."""
  workdir = tmp_path_factory.mktemp("faults") / "reference"
  config = config_lib.load(TINY, {"data.dir": str(tiny_data_dir), "num_epochs": 3})
  loop.train_and_evaluate(config, workdir)
  return workdir


def test_kill_9_in_step_eval_and_checkpoint_write_then_resume_equals_uninterrupted(
    reference, tiny_data_dir, tmp_path):
  workdir = tmp_path / "killed"
  for pause in ("step:5", "checkpoint:1", "eval:2", "step:30"):
    proc = _start(workdir, tiny_data_dir, pause)
    _wait_for(proc, f"paused at {pause}")
    if pause == "step:5":  # A live holder: a second process is refused at once, by name.
      second = subprocess.run(_command(workdir, tiny_data_dir), capture_output=True, text=True,
                              timeout=120)
      assert second.returncode == 2
      assert f"is in use by pid {proc.pid} on" in second.stderr
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  # The dead holder's lock does not block the resume.
  finished = subprocess.run(_command(workdir, tiny_data_dir), capture_output=True, text=True,
                            timeout=300)
  assert finished.returncode == 0, finished.stderr
  assert_same_run(workdir, reference, step=48)  # Nothing lost, nothing twice.
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["status"] == "finished" and summary["epochs"] == 3
  assert len(json.loads((workdir / "run.json").read_text())["resumes"]) == 4
  assert not list((workdir / "checkpoints").glob("*tmp*"))  # Torn writes were cleaned up.


def test_sigterm_checkpoints_and_exits_3_and_a_second_signal_exits_at_once(tiny_data_dir, tmp_path):
  workdir = tmp_path / "term"
  proc = _start(workdir, tiny_data_dir, None, "--config.num_epochs=400")
  deadline = time.time() + 120
  while not (workdir / "metrics.jsonl").is_file() or not (workdir / "metrics.jsonl").read_text():
    assert time.time() < deadline and proc.poll() is None, "no epoch finished"
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == EXIT_INTERRUPTED
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["status"] == "interrupted" and "SIGTERM at step" in summary["error"]
  interrupted_at = int(summary["error"].split("at step ")[1].split(":")[0])
  assert latest_checkpoint(workdir)[0] == interrupted_at

  proc = _start(workdir, tiny_data_dir, "step:3", "--config.num_epochs=400")
  _wait_for(proc, "paused at step:3")
  proc.send_signal(signal.SIGTERM)  # Noted; the run would stop at the next step...
  _wait_for(proc, "SIGTERM: stopping after this step with a checkpoint (send it again")
  proc.send_signal(signal.SIGTERM)  # ...but a second signal ends it at once, paused as it is.
  assert proc.wait(timeout=120) == -signal.SIGTERM


def test_nan_mid_run_fails_at_its_step_keeping_good_checkpoints(tiny_config, tmp_path, monkeypatch):
  real_step = steps.train_step

  def poisoned(state, batch, **kwargs):  # Parameters turn NaN after step 21.
    new_state, metrics = real_step(state, batch, **kwargs)
    poison = jax.numpy.where(state.step == 20, jax.numpy.nan, 1.0)
    return new_state.replace(params=jax.tree.map(lambda p: p * poison, new_state.params)), metrics

  monkeypatch.setattr(steps, "train_step", poisoned)
  tiny_config.num_epochs = 3
  from cnnjax.errors import TrainingError
  with pytest.raises(TrainingError, match=r"NaN or infinite at step 22; .*last good checkpoint: step 16"):
    loop.train_and_evaluate(tiny_config, tmp_path / "nan")
  summary = json.loads((tmp_path / "nan" / "summary.json").read_text())
  assert summary["status"] == "failed" and "at step 22" in summary["error"]
  assert sorted(os.listdir(tmp_path / "nan" / "checkpoints")) == ["16"]
  assert sorted(os.listdir(tmp_path / "nan" / "selected")) == ["16"]
  assert [r["step"] for r in map(json.loads, (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines())] == [16]


def _cli_error(capsys, *args, lines=1):
  code = cli.main(["train", "--config", TINY, *args])
  err = capsys.readouterr().err
  assert "Traceback" not in err and len(err.strip().splitlines()) == lines, err
  return code, err


def _bad_folder(tmp_path, name, transform):
  folder = write_idx_folder(tmp_path / "data", train=64, test=24, gz=name.endswith(".gz"))
  if transform is not None:
    path = folder / name
    path.write_bytes(transform(path.read_bytes()))
  return folder


@pytest.mark.parametrize("name, transform, message", [
    ("train-images-idx3-ubyte.gz", lambda b: b[:100], "train-images-idx3-ubyte.gz: not a readable gzip"),
    ("train-images-idx3-ubyte.gz", lambda b: b"\x00" * len(b), "train-images-idx3-ubyte.gz: not a readable gzip"),
    ("train-labels-idx1-ubyte", lambda b: b[:6], "train-labels-idx1-ubyte: truncated IDX header"),
    ("train-labels-idx1-ubyte", lambda b: b"\x12\x34" + b[2:], "train-labels-idx1-ubyte: bad IDX magic number"),
    ("t10k-images-idx3-ubyte", lambda b: b[:-12], "t10k-images-idx3-ubyte: header promises shape (24, 12, 12)"),
    ("t10k-labels-idx1-ubyte", lambda b: b[:7] + b"\x17" + b[8:-1], "holds 24 images but"),
    ("t10k-labels-idx1-ubyte", lambda b: b[:8] + b"\x09" + b[9:], "t10k-labels-idx1-ubyte: label 9 is outside the 4 classes"),
    ("t10k-images-idx3-ubyte", lambda b: b[:8] + (8).to_bytes(4, "big") + (18).to_bytes(4, "big") + b[16:],
     "t10k-images-idx3-ubyte: images are 8x18 but"),
    ("missing", None, "missing"),
])
def test_bad_data_is_one_line_naming_the_file(name, transform, message, tmp_path, capsys):
  folder = _bad_folder(tmp_path, name, transform)
  if name == "missing":
    folder = tmp_path / "nowhere"
    message = f"looked in {folder}"
  code, err = _cli_error(capsys, "--workdir", str(tmp_path / "run"), f"--config.data.dir={folder}")
  assert code == 2 and message in err
  assert not (tmp_path / "run" / "config.json").exists()  # Failed before training started.


@pytest.mark.parametrize("override, message", [
    ("--config.optimizer.nam=adam", "config.optimizer.nam: unknown field (did you mean 'name'?)"),
    ("--config.num_epochs=two", "config.num_epochs: takes int values, got 'two'"),
    ("--config.batch_size=0", "config.batch_size: must be >= 1, got 0"),
    ("--config.optimizer.learning_rate=-1", "config.optimizer.learning_rate: must be a positive number"),
    ("--config.optimizer.name=rmsprop", "config.optimizer.name: 'rmsprop' is not one of 'sgd', 'adam', 'adamw'"),
    ("--config.model.name=vgg", "config.model.name: 'vgg' is not one of 'cnn', 'mlp', 'nnx_cnn', 'resnet'"),
    ("--config.num_devices=64", "config.num_devices: asks for 64 devices but this process has 8"),
    ("--config.batch_size=20", "config.batch_size: 20 does not split evenly over 8 devices"),
])
def test_bad_config_is_one_line_naming_the_field(override, message, tiny_data_dir, tmp_path, capsys):
  code, err = _cli_error(capsys, "--workdir", str(tmp_path / "run"),
                         f"--config.data.dir={tiny_data_dir}", override)
  assert code == 2 and message in err


@pytest.fixture
def small_disk(tmp_path):
  """A 300 KB tmpfs: room for a run's records, not for its checkpoints."""
  mount = tmp_path / "disk"
  mount.mkdir()
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
  if result.returncode:
    pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
  yield mount
  subprocess.run(["umount", "-l", str(mount)])


def test_full_disk_fails_cleanly_and_read_only_workdir_is_refused(small_disk, tiny_data_dir, capsys,
                                                                  monkeypatch):
  from cnnjax.runs import records  # The checkout's uncommitted diff would fill the disk first.
  monkeypatch.setattr(records, "code_state", lambda folder: ({"commit": None, "dirty": None}, ""))
  code, err = _cli_error(capsys, "--workdir", str(small_disk / "run"),
                         f"--config.data.dir={tiny_data_dir}", "--config.num_epochs=6", lines=2)
  warning, error = err.strip().splitlines()  # The final summary.json did not fit either.
  assert warning.startswith("cnnjax: could not write") and "summary.json" in warning
  assert code == 1 and "No space left on device" in error
  # It names the copy that did not fit (which one depends on the records' sizes) and the
  # step a resume starts from.
  failed = re.search(r"could not write the checkpoint of step (\d+) in (\S+): .*; the latest "
                     r"complete is step (\d+)$", error)
  assert failed, error
  step, folder, complete = int(failed[1]), Path(failed[2]), int(failed[3])
  assert folder in (small_disk / "run" / "checkpoints", small_disk / "run" / "selected")
  assert complete <= step and (small_disk / "run" / "checkpoints" / str(complete)).is_dir()
  from cnnjax.runs.reader import read_run
  assert read_run(small_disk / "run").status == "interrupted"  # Readable, not "running".
  subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
  code, err = _cli_error(capsys, "--workdir", str(small_disk / "other"),
                         f"--config.data.dir={tiny_data_dir}")
  assert code == 2 and f"cannot write run directory {small_disk / 'other'}: Read-only file system" in err


def test_restoring_into_a_changed_model_lists_the_mismatched_parameters(tiny_config, tmp_path):
  from cnnjax import models
  from cnnjax.errors import CheckpointError
  from cnnjax.runs.checkpoints import Checkpoints
  from cnnjax.train.optim import create_optimizer
  from cnnjax.train.state import create_train_state
  tiny_config.num_epochs = 1
  loop.train_and_evaluate(tiny_config, tmp_path / "run")
  tiny_config.model.conv_features = (5, 8)
  model = models.build(tiny_config.model, 4, (12, 12, 1), "batch")
  state = create_train_state(model, (12, 12, 1), create_optimizer(tiny_config.optimizer, 16, 1)[0], 0)
  with pytest.raises(CheckpointError, match=r"does not fit this model .*state/params/conv0/kernel: "
                                            r"checkpoint \(3, 3, 1, 4\) vs model \(3, 3, 1, 5\)"):
    Checkpoints(tmp_path / "run", 3).restore_latest({"state": state,
                                                     "epoch_metrics": steps.TrainMetrics.empty()})
