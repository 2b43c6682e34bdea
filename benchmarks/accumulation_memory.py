"""Peak memory of a big batch in one piece and in micro-batches (config.accumulate_steps),
as `cnnjax plan` predicts it and as a real run uses it.

  python benchmarks/accumulation_memory.py --data DIR [--config configs/mnist.py]
      [--batch 1024] [--steps 1,4] [--rounds 2] [--config.FIELD=VALUE ...]

For each k, `cnnjax plan` gives XLA's memory analysis of the compiled step (per device),
and `cnnjax train` runs 10 steps of the global batch in a process of its own, --rounds
times, the values of k taking turns; its peak resident memory (max RSS) is read with
os.wait4. A process's RSS also holds the JAX runtime, the data and the evaluation, and
varies from one process to the next by a hundred MiB or so, so what is compared is the
difference the micro-batches make: the runs' mean max RSS at k = first against k = last,
and the plan's peak per device times the devices. BatchNorm cannot accumulate (its
statistics would be a micro-batch's): with configs/mnist.py pass
--config.model.batch_norm=False, the default here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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
  parser.add_argument("--rounds", type=int, default=2, help="runs of each k")
  args, extra = parser.parse_known_args()
  extra = extra or ["--config.model.batch_norm=False"]
  fields = [f"--config.data.dir={args.data}", f"--config.batch_size={args.batch}", *extra]
  cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
             platform.processor())
  print(f"{args.config} at batch {args.batch} {' '.join(extra)}; {cpu}, {os.cpu_count()} cores")
  cnnjax = [sys.executable, "-m", "cnnjax"]
  ks = [int(k) for k in args.steps.split(",")]
  plans, peaks = {}, {k: [] for k in ks}
  for k in ks:
    out = _peak_mib(cnnjax + ["plan", args.config, "--json", *fields,
                              f"--config.accumulate_steps={k}"])[1]
    plans[k] = json.loads(out[out.index("{"):])
  for _ in range(args.rounds):
    for k in ks:
      with tempfile.TemporaryDirectory() as workdir:
        peaks[k].append(_peak_mib(cnnjax + [
            "train", "--config", args.config, "--workdir", workdir, *fields,
            f"--config.accumulate_steps={k}", "--config.num_epochs=1",
            f"--config.data.train_examples={10 * args.batch}",
            "--config.data.validation_examples=0", "--config.checkpoint.select=last"])[0])
  mib = lambda b: b / 2**20
  print("| accumulate_steps | plan: peak per device | plan: temporaries | devices | "
        "run max RSS, each round | mean |")
  print("|---|---|---|---|---|---|")
  for k in ks:
    p = plans[k]
    print(f"| {k} | {mib(p['peak_bytes']):.0f} MiB | {mib(p['temp_bytes']):.0f} MiB | "
          f"{p['devices']} | {', '.join(f'{r:.0f}' for r in peaks[k])} MiB | "
          f"{statistics.fmean(peaks[k]):.0f} MiB |")
  first, last = ks[0], ks[-1]
  planned = (plans[first]["peak_bytes"] - plans[last]["peak_bytes"]) * plans[first]["devices"]
  measured = statistics.fmean(peaks[first]) - statistics.fmean(peaks[last])
  print(f"k={last} against k={first}: the plan saves {mib(planned):.0f} MiB over the "
        f"devices, the runs' peak {measured:.0f} MiB")


if __name__ == "__main__":
  main()
