"""Training speed and page faults per step under each memory allocator setting.

  python benchmarks/allocator.py [--configs mnist_talk,mnist_fast] [--rounds 4]

Which pages a process's malloc hands XLA's per-step buffers decides how fast a CPU step
is, and the outcome differs from one process to the next. So each setting trains in
processes of its own, the settings taking turns, --rounds processes each:
  glibc      glibc's defaults (config.keep_freed_memory=False);
  keep       what `cnnjax train` does with config.keep_freed_memory=True (glibc keeps
             freed memory, see cnnjax.runtime.keep_freed_memory);
  tcmalloc   glibc's defaults with TCMalloc preloaded (LD_PRELOAD), when the library is
             installed (Debian: libtcmalloc-minimal4).
Each process trains the config's real train step on MNIST-shaped random pixels, set up
as benchmarks/throughput.py does (11 steps and an evaluation first), then times --steps
steps three times. A row is one process: the median of its three timings in images/s
and its minor page faults per timed step.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TCMALLOC = "libtcmalloc_minimal.so.4"


def worker(config_name: str, keep: bool, steps: int) -> dict:
  """Trains configs/<config_name>.py as benchmarks/throughput.py does, with
  config.keep_freed_memory=`keep`."""
  from throughput import jax_worker  # Beside this file.

  trainer = jax_worker(config_name, steps, f"configs/{config_name}.py",
                       {"keep_freed_memory": keep})
  rates, faults = [], 0
  for _ in range(3):
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    trainer.run_steps(steps)
    rates.append(steps * trainer.info["batch"] / (time.perf_counter() - start))
    faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
  return {"images_per_second": statistics.median(rates), "faults_per_step": faults / (3 * steps),
          "malloc": trainer.info["malloc"]}


def _tcmalloc() -> str:
  """The path of TCMalloc's library, or "" when it is not installed."""
  found = sorted(glob.glob(f"/usr/lib/*/{TCMALLOC}") + glob.glob(f"/usr/lib/{TCMALLOC}"))
  return found[0] if found else ""


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="mnist_talk,mnist_fast")
  parser.add_argument("--rounds", type=int, default=4, help="processes per setting")
  parser.add_argument("--steps", type=int, default=200, help="steps per timing")
  parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(worker(args.worker[0], args.worker[1] == "keep", args.steps)))
    return
  env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
  settings = {"glibc": ("glibc", env), "keep": ("keep", env)}
  if _tcmalloc():
    settings["tcmalloc"] = ("glibc", {**env, "LD_PRELOAD": _tcmalloc()})
  from cnnjax.runs.records import cpu_model
  print(f"{cpu_model()}, {os.cpu_count()} CPU cores; {args.rounds} processes per setting, "
        f"settings in turn\n")
  print("| config | malloc | images/s per process (median of 3 timings) | page faults per step |")
  print("| --- | --- | --- | --- |")
  for name in args.configs.split(","):
    rows = {setting: [] for setting in settings}
    for _ in range(args.rounds):
      for setting, (mode, setting_env) in settings.items():
        out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--worker",
                              name, mode], env=setting_env, capture_output=True, text=True,
                             check=True).stdout
        rows[setting].append(json.loads(out.splitlines()[-1]))
    for setting, results in rows.items():
      rates = ", ".join(f"{r['images_per_second']:,.0f}" for r in results)
      faults = ", ".join(f"{r['faults_per_step']:,.0f}" for r in results)
      print(f"| {name} | {setting} | {rates} | {faults} |", flush=True)


if __name__ == "__main__":
  main()
