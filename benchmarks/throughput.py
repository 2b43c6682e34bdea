"""Training and eval throughput of cnnjax against PyTorch eager, side by side.

  pip install -e ".[bench]"            # adds PyTorch's CPU build
  python benchmarks/throughput.py [--models talk,default] [--steps N] [--repeats 5]
  python benchmarks/throughput.py --models talk_batch_first,talk_nnx   # Linen against NNX

The networks: "talk" is configs/mnist_talk.py (batch 128, SGD with momentum), "default"
is configs/mnist.py (BatchNorm, dropout, random shifts, label smoothing, AdamW); the
PyTorch twins are in benchmarks/torch_reference.py, trained and evaluated in batches of
the sizes in cnnjax's config (batch_size, data.eval_batch_size). Each framework runs in a
process of its own on MNIST-shaped random pixels (throughput does not depend on the
values). cnnjax goes through its real train step (DeviceMap, host batches from the
in-memory pipeline, metrics accumulated on the device).

The last lines give each goal's ratio and whether it is met.

A machine's speed drifts, within seconds on a shared VM, so the two frameworks are timed
in pairs: both processes start (one after the other) and wait; then each timing of
cnnjax is followed at once by one of PyTorch, --repeats times, while the other process
sleeps. A pair's ratio compares the two frameworks at nearly the same moment; the ratio
reported is the median over all pairs of all --rounds (each round starts both processes
afresh). Columns: images/second = median of the timings of --steps steps (by default each
network's STEPS, about 1-2 s of training); first step = seconds of the first step
(compilation, for cnnjax); eval = seconds to evaluate 10,000 test images (median, after
a warm-up evaluation), timed in pairs too; peak RSS of the process.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from cnnjax.runs.records import cpu_model

HERE = Path(__file__).resolve().parent
CONFIGS = {"talk": "configs/mnist_talk.py", "default": "configs/mnist.py",
           # The talk CNN written in Flax NNX, and in Linen without the CPU's batch-last
           # layout (which only cnnjax's Linen CNN has): the NNX path's cost is the ratio
           # of these two.
           "talk_nnx": "configs/mnist_talk.py:nnx", "talk_batch_first": "configs/mnist_talk.py"}
OVERRIDES = {"talk_batch_first": {"model.layout": "batch_first"}}
TWINS = {"talk_nnx": "talk", "talk_batch_first": "talk"}  # PyTorch's network for each name.
STEPS = {"talk": 300, "default": 60, "talk_nnx": 300, "talk_batch_first": 300}  # Unless --steps.
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


def _seconds(fn, *args) -> float:
  start = time.perf_counter()
  fn(*args)
  return time.perf_counter() - start


@dataclasses.dataclass
class Worker:
  """A network ready to time: run_steps(n) trains n steps and waits for them, evaluate()
  evaluates the 10,000 test images, profile(folder) traces steps (cnnjax only)."""
  run_steps: Callable[[int], None]
  evaluate: Callable[[], object]
  profile: Callable[[str], None] | None
  info: dict  # first_step_seconds, batch, devices (cnnjax: eval_batch)


def serve(worker: Worker, steps: int) -> None:
  """Answers the parent's commands on stdin with one JSON line each: "train" (seconds of
  `steps` steps), "eval" (seconds of one evaluation), "profile DIR", "quit" (peak RSS)."""
  print(json.dumps(worker.info), flush=True)
  for line in sys.stdin:
    command, *arg = line.split()
    if command == "quit":
      break
    if command == "train":
      reply = {"seconds": _seconds(worker.run_steps, steps)}
    elif command == "eval":
      reply = {"seconds": _seconds(worker.evaluate)}
    else:  # "profile DIR"
      worker.profile(arg[0])
      reply = {}
    print(json.dumps(reply), flush=True)
  print(json.dumps({"peak_rss_mib": _peak_rss_mib()}), flush=True)


def jax_worker(name: str, steps: int, config_file: str = "",
               overrides: dict | None = None) -> Worker:
  """cnnjax's side: `config_file` (default CONFIGS[name], relative to the repository),
  with `overrides`, trained and evaluated as the train command does."""
  import jax

  from cnnjax import config as config_lib, models, runtime
  from cnnjax.data import pipeline
  from cnnjax.train import loop, parallel
  from cnnjax.train import steps as steps_lib
  from cnnjax.train.optim import create_optimizer
  from cnnjax.train.state import create_train_state

  config = config_lib.load(str(HERE.parent / (config_file or CONFIGS[name])),
                           overrides or OVERRIDES.get(name))
  shape = (28, 28, 1)
  runtime.use_cpu_devices(config.cpu_devices)
  images, labels = _data(TRAIN, 0)
  test_images, test_labels = _data(TEST, 1)
  devices = parallel.select_devices(config.num_devices)
  malloc = runtime.apply_keep_freed_memory(config, devices)  # As `cnnjax train` does.
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

  first = _seconds(run_steps, 1)
  run_steps(10)
  evaluate = lambda: loop.evaluate(dmap, carry[0], test_images, test_labels,
                                   config.data.eval_batch_size)
  evaluate()  # Compiles the eval step.
  profile = lambda folder: _profile(run_steps, steps, Path(folder) / name)
  return Worker(run_steps, evaluate, profile, {
      "first_step_seconds": first, "batch": config.batch_size,
      "eval_batch": config.data.eval_batch_size,
      "devices": f"{len(devices)} {devices[0].platform}", "malloc": malloc})


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


def torch_worker(name: str, batch: int, eval_batch: int, device: str = "cpu") -> Worker:
  """PyTorch's twin of `name`, trained and evaluated in batches of the sizes cnnjax's
  config uses."""
  import torch

  sys.path.insert(0, str(HERE))
  import torch_reference as ref

  torch.set_num_threads(os.cpu_count())
  model, opt, loss_fn, shift = ref.make(TWINS.get(name, name))
  model.to(device)
  sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
  images, labels = _data(TRAIN, 0)
  test_images, test_labels = _data(TEST, 1)
  x_all = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
  y_all = torch.from_numpy(labels.astype(np.int64)).to(device)
  generator = torch.Generator().manual_seed(0)
  position = [0]

  def run_steps(n):
    for _ in range(n):
      if position[0] + batch > TRAIN:
        position[0] = 0
      idx = slice(position[0], position[0] + batch)
      ref.train_step(model, opt, loss_fn, shift, x_all[idx], y_all[idx], generator)
      position[0] += batch
    sync()

  first = _seconds(run_steps, 1)
  run_steps(10)
  evaluate = lambda: ref.accuracy(model, test_images, test_labels, eval_batch, device)
  evaluate()
  where = f"{torch.get_num_threads()} CPU threads" if device == "cpu" else device
  return Worker(run_steps, evaluate, None, {
      "first_step_seconds": first, "batch": batch, "devices": where})


class Process:
  """A worker process (`serve`), driven over its stdin and stdout; its stderr goes to a
  temporary file, shown if it fails."""

  def __init__(self, framework: str, name: str, args, *options: str):
    self.label = f"{framework}:{name}"
    self.log = tempfile.TemporaryFile("w+")
    cmd = [sys.executable, __file__, "--worker", self.label, "--steps",
           str(args.steps or STEPS[name]), "--torch-device", args.torch_device, *options]
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=self.log, text=True, cwd=HERE.parent)
    self.info = self._reply()  # Set up, compiled and warmed up.

  def _reply(self) -> dict:
    for line in self.proc.stdout:
      if line.startswith("{"):
        return json.loads(line)
    self.proc.wait()
    sys.exit(f"{self.label} failed (exit {self.proc.returncode}):\n{self.stderr()[-3000:]}")

  def ask(self, command: str) -> dict:
    self.proc.stdin.write(command + "\n")
    self.proc.stdin.flush()
    return self._reply()

  def stderr(self) -> str:
    self.log.seek(0)
    return self.log.read()


FRAMEWORKS = ("cnnjax", "torch")
PAUSE = 0.1  # Seconds between timings: the idle process's threads stop spinning.
EVALS = 3  # Paired eval timings per round.


def run_round(name: str, args) -> dict:
  """Starts both frameworks' processes, one after the other (PyTorch's with the batch
  sizes of cnnjax's config), then times them in pairs (the order alternating); per
  framework: the timings, first step, peak RSS."""
  jax_process = Process("cnnjax", name, args)
  batches = ("--batch", str(jax_process.info["batch"]),
             "--eval-batch", str(jax_process.info["eval_batch"]))
  procs = {"cnnjax": jax_process, "torch": Process("torch", name, args, *batches)}
  out = {fw: {**p.info, "rates": [], "evals": []} for fw, p in procs.items()}
  steps = args.steps or STEPS[name]
  for i in range(args.repeats + EVALS):
    for fw in FRAMEWORKS if i % 2 == 0 else FRAMEWORKS[::-1]:
      time.sleep(PAUSE)
      if i < args.repeats:
        out[fw]["rates"].append(steps * out[fw]["batch"] / procs[fw].ask("train")["seconds"])
      else:
        out[fw]["evals"].append(procs[fw].ask("eval")["seconds"])
  if args.profile:
    procs["cnnjax"].ask(f"profile {args.profile}")
    print("\n".join(l for l in procs["cnnjax"].stderr().splitlines()
                    if l.startswith(("XLA", "  "))), file=sys.stderr)
  for fw, p in procs.items():
    out[fw]["peak_rss_mib"] = p.ask("quit")["peak_rss_mib"]
    p.proc.wait()
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="talk,default")
  parser.add_argument("--steps", type=int, default=0,
                      help="steps per timing (default: talk 300, default 60)")
  parser.add_argument("--repeats", type=int, default=5,
                      help="paired training timings per round")
  parser.add_argument("--rounds", type=int, default=3,
                      help="times both processes are started afresh; medians are over all "
                           "rounds' timings")
  parser.add_argument("--profile", metavar="DIR", default="",
                      help="also trace cnnjax's steps into DIR/<network> and print the "
                           "slowest XLA operations (one round)")
  parser.add_argument("--torch-device", default="cpu",
                      help="where PyTorch trains: cpu, or cuda beside cnnjax on a GPU")
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--eval-batch", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    framework, name = args.worker.split(":")
    if framework == "cnnjax":
      serve(jax_worker(name, args.steps), args.steps)
    else:
      serve(torch_worker(name, args.batch, args.eval_batch, args.torch_device), args.steps)
    return

  if importlib.util.find_spec("torch") is None:
    sys.exit("PyTorch is not installed: pip install -e \".[bench]\"")
  n_rounds = 1 if args.profile else args.rounds
  steps = args.steps or ", ".join(f"{n} {STEPS[n]}" for n in args.models.split(","))
  print(f"{cpu_model()}, {os.cpu_count()} CPU cores; steps per timing: {steps}; "
        f"{args.repeats} paired timings (and {EVALS} of eval) in each of {n_rounds} rounds\n")
  header = ("| network | framework | devices | batch | images/s | first step s | eval 10k s "
            "| peak RSS MiB | cnnjax / PyTorch |")
  print(header)
  print("|" + " --- |" * 9)
  goals = []
  for name in args.models.split(","):
    rounds = [run_round(name, args) for _ in range(n_rounds)]
    pooled = lambda fw, key: [x for r in rounds for x in r[fw][key]]
    # A pair's two timings ran one right after the other: their ratio is what the
    # machine's drifting speed moves least.
    ratios = sorted(c / t for r in rounds
                    for c, t in zip(r["cnnjax"]["rates"], r["torch"]["rates"]))
    shares = sorted(c / t for r in rounds
                    for c, t in zip(r["cnnjax"]["evals"], r["torch"]["evals"]))
    ratio, share = statistics.median(ratios), statistics.median(shares)
    for fw in FRAMEWORKS:
      info = rounds[0][fw]
      first = statistics.median(r[fw]["first_step_seconds"] for r in rounds)
      rss = statistics.median(r[fw]["peak_rss_mib"] for r in rounds)
      print(f"| {name} | {'cnnjax' if fw == 'cnnjax' else 'PyTorch eager'} | {info['devices']} "
            f"| {info['batch']} | {statistics.median(pooled(fw, 'rates')):,.0f} | {first:.2f} "
            f"| {statistics.median(pooled(fw, 'evals')):.3f} | {rss:,.0f} "
            f"| {f'{ratio:.2f}x' if fw == 'cnnjax' else ''} |", flush=True)
    kind = "cpu" if args.torch_device == "cpu" else "cuda"
    goal = TRAIN_GOALS[kind].get(name)
    if goal:
      goals.append((f"{name} training images/s, cnnjax / PyTorch", ratios, goal, ">="))
    if name in EVAL_GOALS[kind]:
      goals.append((f"{name} eval seconds, cnnjax / PyTorch", shares, EVAL_GOALS[kind][name], "<"))
  print()
  for text, values, goal, op in goals:
    value = statistics.median(values)
    met = value >= goal if op == ">=" else value < goal
    print(f"{text} = {value:.2f} (median of {len(values)} pairs, {values[0]:.2f}-{values[-1]:.2f}; "
          f"goal {op} {goal}): {'met' if met else 'not met'}")


if __name__ == "__main__":
  main()
