"""kill -9 a training run at random moments, resume it each time, and compare the end
with an uninterrupted run, bit for bit.

  python benchmarks/fault_soak.py --kills 10 [--seed 0] [--data-dir DIR]

Uses configs/tiny.py on synthetic IDX files (or --data-dir). Each kill waits for 1-3 new
epochs, then strikes 0-0.4 s later (inside a step, an evaluation or a checkpoint save).
Prints one line per kill and a verdict: metrics.jsonl, the final checkpoint and the
delivered model's test accuracy equal to the uninterrupted run's, or not.
"""
import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def command(workdir, data_dir, epochs):
  return [sys.executable, "-m", "cnnjax", "train", "--config", str(ROOT / "configs" / "tiny.py"),
          "--workdir", str(workdir), f"--config.data.dir={data_dir}",
          f"--config.num_epochs={epochs}", "--config.data.eval_batch_size=8"]


from helpers import comparable_metrics as metrics, latest_checkpoint as latest  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kills", type=int, default=10)
  parser.add_argument("--epochs", type=int, default=60)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data-dir")
  args = parser.parse_args()
  rng = random.Random(args.seed)
  root = Path(tempfile.mkdtemp(prefix="cnnjax_soak_"))
  data_dir = args.data_dir
  if not data_dir:
    from helpers import write_idx_folder
    data_dir = write_idx_folder(root / "data", train=512, test=200)
  reference = root / "reference"
  subprocess.run(command(reference, data_dir, args.epochs), check=True, capture_output=True)
  workdir = root / "killed"
  recorded = lambda: len(metrics(workdir)) if (workdir / "metrics.jsonl").exists() else 0
  kills = 0
  while kills < args.kills:
    target = recorded() + rng.randint(1, 3)  # Let it make progress, then strike...
    proc = subprocess.Popen(command(workdir, data_dir, args.epochs), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while recorded() < target and proc.poll() is None:
      time.sleep(0.01)
    if proc.poll() is not None:
      print(f"run finished before kill {kills + 1}")
      break
    time.sleep(rng.uniform(0.0, 0.4))  # ...somewhere in the next step, eval or save.
    proc.kill()
    proc.wait()
    kills += 1
    print(f"kill -9 #{kills}: {recorded()} epochs recorded", flush=True)
  finished = subprocess.run(command(workdir, data_dir, args.epochs), capture_output=True, text=True)
  if finished.returncode:
    print(finished.stderr[-2000:])
    return 1
  same_metrics = metrics(workdir) == metrics(reference)
  (step_a, a), (step_b, b) = latest(workdir), latest(reference)
  import jax
  same_params = step_a == step_b and all(np.array_equal(x, y) for x, y in
                                         zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  results = lambda w: {k: json.loads((w / "summary.json").read_text()).get(k) for k in
                       ("selected_epoch", "test_accuracy", "final_test_accuracy")}
  same_results = results(workdir) == results(reference)
  resumes = len(json.loads((workdir / "run.json").read_text())["resumes"])
  print(f"\n{kills} kills, {resumes} resumes; metrics.jsonl identical: {same_metrics}; "
        f"final checkpoint (step {step_a}) identical: {same_params}; delivered model and its "
        f"test accuracy identical: {same_results} {results(workdir)}")
  return 0 if same_metrics and same_params and same_results else 1


if __name__ == "__main__":
  sys.exit(main())
