"""Training throughput against device count, for both mappings (pmap, shard_map).

  python benchmarks/scaling.py [--config configs/mnist_talk.py] [--batch 256] [--steps 30]

On a CPU machine the "devices" are simulated (--xla_force_host_platform_device_count)
and share the same cores, so the table shows the mapping's overhead, not a speed-up.
On GPUs/TPUs it uses the real devices. Synthetic inputs of the config's data shape;
images/second is the median of 3 timed runs after warm-up.
"""
import argparse
import os
import statistics
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--config", default="configs/mnist_talk.py")
parser.add_argument("--batch", type=int, default=256, help="global batch size")
parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
parser.add_argument("--input-shape", default="28,28,1")
args = parser.parse_args()
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from cnnjax import config as config_lib, models  # noqa: E402
from cnnjax.train import parallel, steps  # noqa: E402
from cnnjax.train.optim import create_optimizer  # noqa: E402
from cnnjax.train.state import create_train_state  # noqa: E402


def throughput(config, mode: str, n: int, shape) -> tuple[float, float]:
  """(images/second, seconds to compile) of the train step on n devices."""
  dmap = parallel.DeviceMap(mode, parallel.select_devices(n), config, 10)
  model = models.build(config.model, 10, shape, parallel.AXIS)
  state = create_train_state(model, shape, create_optimizer(config.optimizer, 100, 1)[0], 0)
  rstate, rmetrics = dmap.replicate(state), dmap.replicate(steps.TrainMetrics.empty())
  rng = np.random.default_rng(0)
  batch = dmap.split({"images": rng.integers(0, 255, (args.batch, *shape), dtype=np.uint8),
                      "labels": rng.integers(0, 10, args.batch).astype(np.int32)})
  start = time.perf_counter()
  rstate, rmetrics = dmap.train_step(rstate, rmetrics, batch)
  jax.block_until_ready(rmetrics)
  compile_seconds = time.perf_counter() - start
  for _ in range(5):
    rstate, rmetrics = dmap.train_step(rstate, rmetrics, batch)
  rates = []
  for _ in range(3):
    jax.block_until_ready(rmetrics)
    start = time.perf_counter()
    for _ in range(args.steps):
      rstate, rmetrics = dmap.train_step(rstate, rmetrics, batch)
    jax.block_until_ready(rmetrics)
    rates.append(args.steps * args.batch / (time.perf_counter() - start))
  return statistics.median(rates), compile_seconds


def main():
  config = config_lib.load(args.config)
  shape = tuple(int(s) for s in args.input_shape.split(","))
  devices = jax.local_devices()
  counts = [n for n in (1, 2, 4, 8, 16) if n <= len(devices) and args.batch % n == 0]
  print(f"{args.config}, global batch {args.batch}, {devices[0].platform} "
        f"({len(devices)} devices: {devices[0].device_kind})")
  if devices[0].platform == "cpu":
    print(f"CPU: the devices are simulated and share {os.cpu_count()} cores, so this shows "
          f"the overhead of splitting a batch, not a speed-up.")
  print(f"\n{'devices':>7} {'mode':>10} {'images/s':>10} {'vs 1 device':>12} {'compile s':>10}")
  for mode in parallel.MODES:
    base = None
    for n in counts:
      rate, compile_seconds = throughput(config, mode, n, shape)
      base = base or rate
      print(f"{n:>7} {mode:>10} {rate:>10,.0f} {rate / base:>11.2f}x {compile_seconds:>10.2f}",
            flush=True)


if __name__ == "__main__":
  sys.exit(main())
