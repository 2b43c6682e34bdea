"""Peak memory of a big batch in one piece and in micro-batches (config.accumulate_steps),
as `cnnjax plan` predicts it and as a real run uses it.

  python benchmarks/accumulation_memory.py --data DIR [--config configs/mnist.py]
      [--batch 1024] [--steps 1,4] [--config.FIELD=VALUE ...]

For each k it runs, each in a process of its own: `cnnjax plan` (XLA's memory analysis of
the compiled step, per device) and `cnnjax train` for 10 steps of the global batch; the
peak resident memory (max RSS) of each process is read with os.wait4. The plan process
loads the data and compiles the same step but never runs it, so a run's max RSS minus
its plan's is what running the step added: compare it with plan's figures times the
devices. BatchNorm cannot accumulate (its statistics would be a micro-batch's): with
configs/mnist.py pass --config.model.batch_norm=False, the default here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile


def _peak_mib(command: list[str]) -> tuple[float, str]:
  """(max RSS in MiB, stdout) of `command` run to its end; exits with its error if it fails."""
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    proc = subprocess.Popen(command, stdout=out, stderr=err, text=True)
    _, status, usage = os.wait4(proc.pid, 0)  # The child's own peak, reaped here.
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0), err.seek(0)
    if proc.returncode:
      sys.exit(f"{' '.join(command)} failed:\n{err.read()[-2000:]}")
    return usage.ru_maxrss / 1024, out.read()  # Linux counts KiB.


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", required=True, help="MNIST's IDX folder")
  parser.add_argument("--config", default="configs/mnist.py")
  parser.add_argument("--batch", type=int, default=1024)
  parser.add_argument("--steps", default="1,4", help="the accumulate_steps to compare")
  args, extra = parser.parse_known_args()
  extra = extra or ["--config.model.batch_norm=False"]
  fields = [f"--config.data.dir={args.data}", f"--config.batch_size={args.batch}", *extra]
  cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
             platform.processor())
  print(f"{args.config} at batch {args.batch} {' '.join(extra)}; {cpu}, {os.cpu_count()} cores")
  print("| accumulate_steps | plan: peak per device | plan: temporaries | devices | "
        "plan process max RSS | run max RSS | run - plan |")
  print("|---|---|---|---|---|---|---|")
  cnnjax = [sys.executable, "-m", "cnnjax"]
  for k in map(int, args.steps.split(",")):
    with_k = fields + [f"--config.accumulate_steps={k}"]
    plan_rss, out = _peak_mib(cnnjax + ["plan", args.config, "--json", *with_k])
    figures = json.loads(out[out.index("{"):])
    with tempfile.TemporaryDirectory() as workdir:
      run_rss, _ = _peak_mib(cnnjax + [
          "train", "--config", args.config, "--workdir", workdir, *with_k,
          "--config.num_epochs=1", f"--config.data.train_examples={10 * args.batch}",
          "--config.data.validation_examples=0", "--config.checkpoint.select=last"])
    mib = lambda b: b / 2**20
    print(f"| {k} | {mib(figures['peak_bytes']):.0f} MiB | {mib(figures['temp_bytes']):.0f} MiB "
          f"| {figures['devices']} | {plan_rss:.0f} MiB | {run_rss:.0f} MiB | "
          f"{run_rss - plan_rss:.0f} MiB |", flush=True)


if __name__ == "__main__":
  main()
