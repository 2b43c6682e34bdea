"""`cnnjax sweep --launcher local|ray|slurm` on real engines: a Ray cluster started for the
test session, and the SLURM cluster of `scripts/slurm-local start` (CI starts it; elsewhere
these tests skip unless CNNJAX_TEST_EXTRAS=required, which makes a missing engine fail)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cnnjax.exp import table
from helpers import THREE_POINTS, comparable_metrics, write_experiment
from helpers import sweep_command as _sweep

pytestmark = pytest.mark.integration  # Starts processes or trains whole runs.

LONG = 'hyper.sweep("num_epochs", [1, 30])'


def _results(root):
  return {r["run"]: (r["status"], r.get("test_accuracy"), r.get("val_accuracy"), r.get("train_loss"))
          for r in table.show([root]).rows}


@pytest.fixture(scope="module")
def local(tiny_data_dir, tmp_path_factory):
  """The three-point sweep and the long sweep under the local launcher."""
  folder = tmp_path_factory.mktemp("local")
  three = _sweep(write_experiment(folder / "three.py", tiny_data_dir, THREE_POINTS), folder / "three")
  assert three.returncode == 1, three.stderr  # One point fails.
  long = _sweep(write_experiment(folder / "long.py", tiny_data_dir, LONG), folder / "long",
                "--workers", "2")
  assert long.returncode == 0, long.stderr
  return folder


def test_local_prints_each_state_change_with_its_log(local):
  out = _sweep(local / "three.py", local / "three-again").stdout
  lines = out.splitlines()
  for name in ("conv_features=4-8", "conv_features=6-8"):
    assert f"{name}: queued" in lines
    assert f"{name}: running, log {local / 'three-again' / name / 'train.log'}" in lines
    assert f"{name}: finished" in lines
  failed = [l for l in lines if l.startswith("conv_features=4-8-8-8: failed (")]
  assert len(failed) == 1 and "4 conv blocks" in failed[0] and failed[0].endswith("train.log")
  assert lines.index("conv_features=4-8: queued") < lines.index("conv_features=4-8: finished")


@pytest.mark.parametrize("launcher", ["ray", "slurm"])
def test_every_launcher_gives_the_local_table(launcher, local, tmp_path, request):
  if launcher == "ray":
    env, args = request.getfixturevalue("ray_env"), ["--resources", "cpu=1"]
  else:
    request.getfixturevalue("slurm")
    env, args = {}, ["--max-parallel", "2"]
  experiment = local / "three.py"
  run = _sweep(experiment, tmp_path / "three", "--launcher", launcher, *args, env=env)
  assert run.returncode == 1, run.stderr  # The failing point fails; the others finish.
  assert _results(tmp_path / "three") == _results(local / "three"), run.stdout + run.stderr
  for name in ("conv_features=4-8", "conv_features=6-8"):
    assert comparable_metrics(tmp_path / "three" / name) == comparable_metrics(local / "three" / name)
  assert "conv_features=4-8: finished" in run.stdout.splitlines()
  again = _sweep(experiment, tmp_path / "three", "--launcher", launcher, *args, env=env)
  assert "conv_features=4-8-8-8: failed before, skipped" in again.stdout
  retried = _sweep(experiment, tmp_path / "three", "--launcher", launcher, "--retry-failed",
                   *args, env=env)
  assert "conv_features=4-8-8-8: retrying" in retried.stdout
  assert "conv_features=4-8: finished, skipped" in retried.stdout


def _wait(condition, what: str, timeout: float = 300):
  deadline = time.time() + timeout
  while not condition():
    assert time.time() < deadline, f"timed out waiting for {what}"
    time.sleep(0.1)


def _checkpointed(workdir):
  folder = workdir / "checkpoints"
  return lambda: folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def test_a_sweep_stopped_part_way_skips_finished_points_and_resumes_the_other(local, tmp_path):
  root = tmp_path / "long"
  sweep = subprocess.Popen([sys.executable, "-m", "cnnjax", "sweep", str(local / "long.py"),
                            "--root", str(root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
  _wait(_checkpointed(root / "num_epochs=30"), "the long point's first checkpoint")
  os.killpg(sweep.pid, signal.SIGTERM)  # As a terminal's Ctrl-C or a job's end would.
  sweep.communicate(timeout=120)
  summary = json.loads((root / "num_epochs=30" / "summary.json").read_text())
  assert summary["status"] == "interrupted"
  again = _sweep(local / "long.py", root)
  assert again.returncode == 0, again.stdout + again.stderr
  assert "num_epochs=1: finished, skipped" in again.stdout
  assert comparable_metrics(root / "num_epochs=30") == comparable_metrics(local / "long" / "num_epochs=30")
  assert len(json.loads((root / "num_epochs=30" / "run.json").read_text())["resumes"]) == 1


def test_a_requeued_slurm_point_resumes_from_its_checkpoint(slurm, local, tmp_path):
  root = tmp_path / "long"
  sweep = subprocess.Popen([sys.executable, "-m", "cnnjax", "sweep", str(local / "long.py"),
                            "--root", str(root), "--launcher", "slurm"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  workdir = root / "num_epochs=30"
  _wait(_checkpointed(workdir), "the long point's first checkpoint")
  job = json.loads((workdir / "launch.json").read_text())["slurm_job_id"]
  # What SLURM sends ahead of a time limit or a preemption (submitit asks for SIGUSR2).
  subprocess.run(["scancel", "--signal=USR2", job], check=True)
  out, _ = sweep.communicate(timeout=600)
  assert sweep.returncode == 0, out
  log = (workdir / "train.log").read_text()
  assert "SIGUSR2 at step" in log
  assert len(json.loads((workdir / "run.json").read_text())["resumes"]) == 1
  assert comparable_metrics(workdir) == comparable_metrics(local / "long" / "num_epochs=30")


def _pid(workdir) -> int:
  """The training process holding a run directory, from its lock file."""
  return int((workdir / ".lock").read_text().split()[1])


def _alive(pid: int) -> bool:
  try:
    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
  except FileNotFoundError:
    return False
  return state != "Z"


def test_the_sweeps_stop_request_landing_while_its_point_records_its_stop_leaves_it_interrupted(
    local, tmp_path):
  """A process-group SIGTERM reaches the sweep and its point at once; the sweep then asks
  the point to stop too (SIGUSR2). Here the point is held where that request came too late
  before: it has taken its SIGTERM, saved its checkpoint and not yet recorded "interrupted"
  (failpoint "stopped") when the sweep's half of the same signal makes it send SIGUSR2."""
  root, log = tmp_path / "long", None
  workdir = root / "num_epochs=30"
  sweep = subprocess.Popen([sys.executable, "-m", "cnnjax", "sweep", str(local / "long.py"),
                            "--root", str(root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True,
                           env=dict(os.environ, CNNJAX_PAUSE_AT="stopped:1"))
  _wait(_checkpointed(workdir), "the long point's first checkpoint")
  trainer = _pid(workdir)
  os.kill(trainer, signal.SIGTERM)  # The point's half of the group's SIGTERM.
  log = workdir / "train.log"
  _wait(lambda: "paused at stopped:1" in log.read_text(), "the point to save its checkpoint")
  os.kill(sweep.pid, signal.SIGTERM)  # The sweep's half: it asks its points to stop.
  _wait(lambda: "SIGUSR2: already stopping" in log.read_text() or not _alive(trainer),
        "the sweep's stop request to reach the point")
  if _alive(trainer):
    os.kill(trainer, signal.SIGCONT)  # Lets the point go on from its failpoint.
  out, _ = sweep.communicate(timeout=120)
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["status"] == "interrupted", (summary.get("error"), log.read_text()[-600:])
  assert "SIGTERM at step" in summary["error"]
  again = _sweep(local / "long.py", root)
  assert again.returncode == 0, again.stdout + again.stderr
  assert comparable_metrics(workdir) == comparable_metrics(local / "long" / "num_epochs=30")


def test_a_second_group_sigterm_stops_the_point_at_once_and_leaves_it_interrupted(local, tmp_path):
  """Ctrl-C twice, or a second SIGTERM to the group: the point ends at once by the signal's
  default action, which its launcher records as interrupted; the next sweep resumes it."""
  root = tmp_path / "long"
  workdir = root / "num_epochs=30"
  sweep = subprocess.Popen([sys.executable, "-m", "cnnjax", "sweep", str(local / "long.py"),
                            "--root", str(root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True,
                           env=dict(os.environ, CNNJAX_PAUSE_AT="step:20"))
  log = workdir / "train.log"
  _wait(lambda: log.is_file() and "paused at step:20" in log.read_text(), "the point's step 20")
  trainer = _pid(workdir)
  os.killpg(sweep.pid, signal.SIGTERM)
  _wait(lambda: "SIGTERM: stopping after this step" in log.read_text(), "the point's first stop")
  os.killpg(sweep.pid, signal.SIGTERM)
  _wait(lambda: not _alive(trainer), "the point to end at once")
  out, _ = sweep.communicate(timeout=120)
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["status"] == "interrupted", (out, sweep.returncode)
  assert summary["error"].startswith("stopped at once by SIGTERM")
  again = _sweep(local / "long.py", root)
  assert again.returncode == 0, again.stdout + again.stderr
  assert "resuming" in log.read_text()  # From the step-16 checkpoint.
  assert comparable_metrics(workdir) == comparable_metrics(local / "long" / "num_epochs=30")
