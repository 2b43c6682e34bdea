"""Training and eval throughput of cnnjax against PyTorch eager, side by side.

  pip install -e ".[bench]"            # adds PyTorch's CPU build
  python benchmarks/throughput.py [--models talk,default] [--steps N] [--repeats 5]

The networks: "talk" is configs/mnist_talk.py (batch 128, SGD with momentum), "default"
is configs/mnist.py (BatchNorm, dropout, random shifts, label smoothing, AdamW); the
PyTorch twins are in benchmarks/torch_reference.py. Each (framework, network) runs in a
process of its own, one after another, on MNIST-shaped random pixels (throughput does
not depend on the values). cnnjax goes through its real train step (DeviceMap, host
batches from the in-memory pipeline, metrics accumulated on the device).

The last lines give each goal's ratio and whether it is met.

Each framework runs --rounds times, alternating (cnnjax, PyTorch, cnnjax, ...), since a
machine's speed drifts; the table gives medians over rounds and the ratio is the median of
each round's ratio. Columns: images/second = median of --repeats timings of --steps steps
(by default each network's STEPS, about 1-2 s of training: shorter timings move with the
machine's noise)
after warm-up;
first step = seconds of the first step (compilation, for cnnjax); eval = seconds to
evaluate 10,000 test images (median of 3, after warm-up); peak RSS of the process.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cnnjax.runs.records import cpu_model

HERE = Path(__file__).resolve().parent
CONFIGS = {"talk": "configs/mnist_talk.py", "default": "configs/mnist.py"}
STEPS = {"talk": 300, "default": 60}  # Steps per timing unless --steps.
TRAIN, TEST = 60_000, 10_000
# The goals, as ratios measured in one run: training images/s of cnnjax over PyTorch eager
# at least this; eval time of cnnjax over PyTorch's below this.
# On a GPU (--torch-device cuda) the goal is the default model's training images/s.
TRAIN_GOALS = {"cpu": {"talk": 1.5, "default": 2.0}, "cuda": {"default": 1.5}}
EVAL_GOALS = {"cpu": {"default": 0.5}, "cuda": {}}


def _data(n: int, seed: int):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
          rng.integers(0, 10, n).astype(np.int32))


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_rate(run_steps, steps: int, batch: int, repeats: int) -> float:
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    run_steps(steps)
    rates.append(steps * batch / (time.perf_counter() - start))
  return statistics.median(rates)


def _median_seconds(fn, repeats: int = 3) -> float:
  fn()  # Warm-up (compiles the eval step).
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def jax_worker(name: str, steps: int, repeats: int, profile: str = "") -> dict:
  import jax

  from cnnjax import config as config_lib, models, runtime
  from cnnjax.data import pipeline
  from cnnjax.train import loop, parallel
  from cnnjax.train import steps as steps_lib
  from cnnjax.train.optim import create_optimizer
  from cnnjax.train.state import create_train_state

  config = config_lib.load(str(HERE.parent / CONFIGS[name]))
  shape = (28, 28, 1)
  runtime.use_cpu_devices(config.cpu_devices)
  images, labels = _data(TRAIN, 0)
  test_images, test_labels = _data(TEST, 1)
  devices = parallel.select_devices(config.num_devices)
  dmap = parallel.DeviceMap(config.parallel, devices, config, 10)
  model = models.build(config.model, 10, shape, parallel.AXIS)
  spe = pipeline.steps_per_epoch(TRAIN, config.batch_size)
  tx, _ = create_optimizer(config.optimizer, spe, config.num_epochs)
  state = create_train_state(model, shape, tx, config.seed)
  carry = [dmap.replicate(state), dmap.replicate(steps_lib.TrainMetrics.empty())]
  batches = iter(())

  def run_steps(n):
    nonlocal batches
    for _ in range(n):
      batch = next(batches, None)
      if batch is None:
        batches = pipeline.train_batches(images, labels, config.batch_size, 0, 0)
        batch = next(batches)
      carry[:] = dmap.train_step(*carry, dmap.split(batch))
    jax.block_until_ready(carry)

  start = time.perf_counter()
  run_steps(1)
  first = time.perf_counter() - start
  run_steps(10)
  rate = _median_rate(run_steps, steps, config.batch_size, repeats)
  eval_seconds = _median_seconds(lambda: loop.evaluate(
      dmap, carry[0], test_images, test_labels, config.data.eval_batch_size))
  if profile:
    _profile(run_steps, steps, Path(profile) / name)
  return {"images_per_second": rate, "first_step_seconds": first, "eval_seconds": eval_seconds,
          "batch": config.batch_size, "devices": f"{len(devices)} {devices[0].platform}"}


def _profile(run_steps, steps: int, folder: Path, top: int = 12) -> None:
  """Traces `steps` steps with jax.profiler into `folder` (open it in xprof or Perfetto)
  and prints, to stderr, the XLA operations that took the most time per step."""
  import collections
  import gzip

  import jax

  with jax.profiler.trace(str(folder), create_perfetto_trace=True):
    run_steps(steps)
  trace = json.load(gzip.open(max(folder.rglob("*.trace.json.gz"), key=os.path.getmtime)))
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  skip = ("$", "ThunkExecutor", "Thread", "end:", "Pjit", "Common", "Slinky", "Wait",
          "Rendezvous", "ParseArguments", "Allocate", "Handle")
  total = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and not e["name"].startswith(skip):
      total[e["name"]] += e["dur"]
  print(f"XLA operations, ms per step (trace in {folder}):", file=sys.stderr)
  for op, micros in total.most_common(top):
    print(f"  {micros / steps / 1000:7.3f}  {op}", file=sys.stderr)


def torch_worker(name: str, steps: int, repeats: int, device: str = "cpu") -> dict:
  import torch

  sys.path.insert(0, str(HERE))
  import torch_reference as ref

  torch.set_num_threads(os.cpu_count())
  model, opt, loss_fn, shift = ref.make(name)
  model.to(device)
  sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
  images, labels = _data(TRAIN, 0)
  test_images, test_labels = _data(TEST, 1)
  x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
  y_all = torch.from_numpy(labels.astype(np.int64)).to(device)
  generator = torch.Generator().manual_seed(0)
  batch, position = 128, [0]

  def run_steps(n):
    for _ in range(n):
      if position[0] + batch > TRAIN:
        position[0] = 0
      idx = slice(position[0], position[0] + batch)
      ref.train_step(model, opt, loss_fn, shift, x_all[idx], y_all[idx], generator)
      position[0] += batch
    sync()

  start = time.perf_counter()
  run_steps(1)
  first = time.perf_counter() - start
  run_steps(10)
  rate = _median_rate(run_steps, steps, batch, repeats)
  eval_seconds = _median_seconds(lambda: ref.accuracy(model, test_images, test_labels,
                                                      device=device))
  where = f"{torch.get_num_threads()} CPU threads" if device == "cpu" else device
  return {"images_per_second": rate, "first_step_seconds": first, "eval_seconds": eval_seconds,
          "batch": batch, "devices": where}


def run_worker(framework: str, name: str, args) -> dict:
  steps = args.steps or STEPS[name]
  cmd = [sys.executable, __file__, "--worker", f"{framework}:{name}", "--steps", str(steps),
         "--repeats", str(args.repeats), "--profile", args.profile,
         "--torch-device", args.torch_device]
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
  if args.profile and framework == "cnnjax":
    print("\n".join(l for l in out.stderr.splitlines() if l.startswith(("XLA", "  "))), file=sys.stderr)
  lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
  if out.returncode or not lines:
    sys.exit(f"{framework}:{name} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
  return json.loads(lines[-1])


def _median_round(results: list[dict]) -> dict:
  """Per column, the median over rounds."""
  out = dict(results[0])
  for key in ("images_per_second", "first_step_seconds", "eval_seconds", "peak_rss_mib"):
    out[key] = statistics.median(r[key] for r in results)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="talk,default")
  parser.add_argument("--steps", type=int, default=0,
                      help="steps per timing (default: talk 300, default 60)")
  parser.add_argument("--repeats", type=int, default=5, help="timings; the median is reported")
  parser.add_argument("--rounds", type=int, default=3,
                      help="processes per framework, run alternately; medians are reported")
  parser.add_argument("--profile", metavar="DIR", default="",
                      help="also trace cnnjax's steps into DIR/<network> and print the "
                           "slowest XLA operations (one round)")
  parser.add_argument("--torch-device", default="cpu",
                      help="where PyTorch trains: cpu, or cuda beside cnnjax on a GPU")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    framework, name = args.worker.split(":")
    if framework == "cnnjax":
      result = jax_worker(name, args.steps, args.repeats, args.profile)
    else:
      result = torch_worker(name, args.steps, args.repeats, args.torch_device)
    print(json.dumps({**result, "peak_rss_mib": _peak_rss_mib()}), flush=True)
    return

  if importlib.util.find_spec("torch") is None:
    sys.exit("PyTorch is not installed: pip install -e \".[bench]\"")
  n_rounds = 1 if args.profile else args.rounds
  steps = args.steps or ", ".join(f"{n} {STEPS[n]}" for n in args.models.split(","))
  print(f"{cpu_model()}, {os.cpu_count()} CPU cores; steps per timing: {steps}; median of "
        f"{args.repeats} timings in each of {n_rounds} rounds\n")
  header = ("| network | framework | devices | batch | images/s | first step s | eval 10k s "
            "| peak RSS MiB | cnnjax / PyTorch |")
  print(header)
  print("|" + " --- |" * 9)
  goals = []
  for name in args.models.split(","):
    rounds = [{fw: run_worker(fw, name, args) for fw in ("cnnjax", "torch")}
              for _ in range(n_rounds)]
    results = {fw: _median_round([r[fw] for r in rounds]) for fw in ("cnnjax", "torch")}
    # Each round's two processes ran back to back: the median of their ratios is what
    # is least moved by the machine's speed drifting between rounds.
    ratio = statistics.median(r["cnnjax"]["images_per_second"] / r["torch"]["images_per_second"]
                              for r in rounds)
    share = statistics.median(r["cnnjax"]["eval_seconds"] / r["torch"]["eval_seconds"]
                              for r in rounds)
    for fw, r in results.items():
      print(f"| {name} | {'cnnjax' if fw == 'cnnjax' else 'PyTorch eager'} | {r['devices']} "
            f"| {r['batch']} | {r['images_per_second']:,.0f} | {r['first_step_seconds']:.2f} "
            f"| {r['eval_seconds']:.3f} | {r['peak_rss_mib']:,.0f} "
            f"| {f'{ratio:.2f}x' if fw == 'cnnjax' else ''} |", flush=True)
    kind = "cpu" if args.torch_device == "cpu" else "cuda"
    goal = TRAIN_GOALS[kind].get(name)
    if goal:
      goals.append((f"{name} training images/s, cnnjax / PyTorch", ratio, goal, ">="))
    if name in EVAL_GOALS[kind]:
      goals.append((f"{name} eval seconds, cnnjax / PyTorch", share, EVAL_GOALS[kind][name], "<"))
  print()
  for text, value, goal, op in goals:
    met = value >= goal if op == ">=" else value < goal
    print(f"{text} = {value:.2f} (goal {op} {goal}): {'met' if met else 'not met'}")


if __name__ == "__main__":
  main()
