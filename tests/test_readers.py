"""Commands that read a run never write to it: every reader runs against a run paused in
the middle of a checkpoint write, and the run then ends exactly as an undisturbed one."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import cnnjax
from cnnjax import config as config_lib
from cnnjax.train import loop
from helpers import ROOT, assert_same_run

pytestmark = pytest.mark.integration  # Starts processes and trains whole runs.

TINY = str(ROOT / "configs" / "tiny.py")


def _tree(folder):
  """Every path under `folder` with its size and modification time."""
  out = {}
  for path in sorted(folder.rglob("*")):
    stat = path.stat()
    out[str(path.relative_to(folder))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns)
  return out


def _wait_for(proc, marker):
  seen = []
  for line in proc.stderr:
    seen.append(line)
    if marker in line:
      return
  raise AssertionError(f"{marker!r} never came: {''.join(seen)[-2000:]}")


def test_every_reader_leaves_a_run_writing_a_checkpoint_untouched(tiny_data_dir, tmp_path):
  reference = tmp_path / "reference"
  loop.train_and_evaluate(config_lib.load(TINY, {"data.dir": str(tiny_data_dir),
                                                 "num_epochs": 3}), reference)
  run = tmp_path / "run"
  # The third commit is epoch 2's checkpoint (epoch 1 wrote checkpoints/ and selected/).
  trainer = subprocess.Popen(
      [sys.executable, "-m", "cnnjax", "train", "--config", TINY, "--workdir", str(run),
       f"--config.data.dir={tiny_data_dir}", "--config.num_epochs=3"],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
      env=dict(os.environ, CNNJAX_PAUSE_AT="checkpoint_commit:3"))
  try:
    _wait_for(trainer, "paused at checkpoint_commit:3")
    writing = [p.name for p in (run / "checkpoints").iterdir() if "tmp" in p.name]
    assert len(writing) == 1, writing  # Orbax's temporary folder, not yet renamed.
    before = _tree(run)
    Image.fromarray(np.full((12, 12), 200, np.uint8)).save(tmp_path / "digit.png")
    out = tmp_path / "out"
    for command in (["eval", str(run)], ["predict", str(run), str(tmp_path / "digit.png")],
                    ["viz", str(run), "-o", str(out)], ["exp", "show", str(run)],
                    ["exp", "diff", str(run), str(reference)],
                    ["exp", "plot", str(run), "-o", str(out / "curves.png")]):
      done = subprocess.run([sys.executable, "-m", "cnnjax", *command], capture_output=True,
                            text=True, timeout=300)
      assert done.returncode == 0, (command, done.stderr)
    loaded = cnnjax.load_run(run)
    assert loaded.step == 16 and loaded.predict(np.zeros((2, 12, 12, 1), np.uint8)).shape == (2, 4)
    after = _tree(run)
    assert [p for p in after if p.startswith("eval")] == ["eval", f"eval/selected-step16-{_name(run)}.json"]
    assert {p: v for p, v in after.items() if not p.startswith("eval")} == before
  finally:
    trainer.send_signal(signal.SIGCONT)  # Lets it go on from its failpoint.
  assert trainer.wait(timeout=300) == 0, trainer.stderr.read()
  assert_same_run(run, reference, step=48)
  assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def _name(run) -> str:
  """The file name `cnnjax eval` gives its result for the run's own data."""
  import re
  location = json.loads((run / "run.json").read_text())["data"]
  return re.sub(r"[^\w.-]+", "_", location).strip("_")[-80:]
