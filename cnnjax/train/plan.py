"""`cnnjax plan`: what a config's train step costs, read off the compiled step without
training it (as MaxText's train_compile.py compiles for a target without running).

The step is compiled exactly as training compiles it (same devices, mode, batch and
state); XLA's cost analysis gives its FLOPs and its memory analysis the bytes of its
arguments (state, batch), outputs and temporaries on each device. Peak per device is
arguments + outputs - what outputs reuse of donated arguments + temporaries.
"""
from __future__ import annotations

import dataclasses
import re
import time

from cnnjax import config as config_lib
from cnnjax import models, runtime
from cnnjax.errors import ConfigError, UsageError
from cnnjax.train import loop, parallel, steps
from cnnjax.train.optim import create_optimizer

_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "TB": 1e12}


@dataclasses.dataclass(frozen=True)
class Plan:
  params: int
  devices: int  # Global: the step's FLOPs are every device's.
  platform: str
  batch_size: int  # Global.
  accumulate_steps: int
  batch_norm: bool  # Whether the model keeps batch statistics (accumulation is refused).
  flops_per_step: float
  argument_bytes: int  # Per device, as every memory figure here.
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  compile_seconds: float

  @property
  def flops_per_example(self) -> float:
    return self.flops_per_step / self.batch_size

  @property
  def peak_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes

  def as_dict(self) -> dict:
    return {**dataclasses.asdict(self), "flops_per_example": self.flops_per_example,
            "peak_bytes": self.peak_bytes}


def parse_bytes(text: str) -> int:
  """'2GiB', '512MB', '1e9' -> bytes (binary units with an i, decimal ones without)."""
  match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([A-Za-z]*)\s*", text)
  unit = match and match.group(2).upper()
  if not match or unit not in _UNITS:
    raise UsageError(f"--memory-limit {text!r}: give a size such as 2GiB, 512MiB or 8GB")
  return int(float(match.group(1)) * _UNITS[unit])


def plan(config) -> Plan:
  """Compiles `config`'s train step (checking every field first) and reads its costs."""
  config_lib.validate(config)
  origin = runtime.use_cpu_devices(config.cpu_devices)  # No compilation cache: a cold compile.
  run = loop.prepare(config, origin)
  tx, _ = create_optimizer(config.optimizer, run.periods.steps_per_epoch, config.num_epochs)
  dmap = parallel.DeviceMap(config.parallel, run.devices, config, run.dataset.num_classes)
  train_batch, _ = loop.first_batches(run, dmap)
  shapes = loop.state_shapes(run, tx)
  lower = dmap.lowered_train_step(shapes, steps.TrainMetrics.empty(), train_batch)
  start = time.perf_counter()
  compiled = lower().compile()
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  if config.accumulate_steps > 1:
    # XLA's cost analysis counts a loop's body once: the FLOPs are those of the same update
    # in one piece.
    whole = config_lib.with_overrides(config, {"accumulate_steps": 1})
    dmap = parallel.DeviceMap(config.parallel, run.devices, whole, run.dataset.num_classes)
    compiled = dmap.lowered_train_step(shapes, steps.TrainMetrics.empty(), train_batch)().compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # Per device.
  return Plan(params=models.param_count(shapes.params), devices=dmap.global_n,
              platform=run.devices[0].platform, batch_size=run.padded_batch,
              accumulate_steps=config.accumulate_steps, batch_norm=bool(shapes.batch_stats),
              flops_per_step=float(cost.get("flops", 0.0)) * dmap.global_n,
              argument_bytes=memory.argument_size_in_bytes, output_bytes=memory.output_size_in_bytes,
              alias_bytes=memory.alias_size_in_bytes, temp_bytes=memory.temp_size_in_bytes,
              compile_seconds=seconds)


def size(n: float) -> str:
  for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if n >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{int(n)} B"


def format_plan(p: Plan) -> str:
  return "\n".join([
      f"parameters          {p.params:,}",
      f"devices             {p.devices} {p.platform}; global batch {p.batch_size}"
      + (f" in {p.accumulate_steps} micro-batches" if p.accumulate_steps > 1 else ""),
      f"FLOPs per step      {p.flops_per_step:.4g} (XLA's cost analysis of the compiled step)",
      f"FLOPs per example   {p.flops_per_example:.4g}",
      f"memory per device   {size(p.peak_bytes)} peak: arguments {size(p.argument_bytes)}, "
      f"outputs {size(p.output_bytes)} ({size(p.alias_bytes)} of them in donated arguments), "
      f"temporaries {size(p.temp_bytes)}",
      f"compile time        {p.compile_seconds:.2f} s",
  ])


def one_line(p: Plan) -> str:
  """The figures of a sweep point's plan."""
  return (f"{p.params:,} params  {p.flops_per_step:.3g} FLOPs/step  "
          f"{size(p.peak_bytes)}/device  compile {p.compile_seconds:.1f} s")


def check_limit(p: Plan, limit: int) -> None:
  """ConfigError naming config.batch_size (and accumulate_steps, where the model can
  accumulate) when the step's peak memory per device is over `limit` bytes."""
  if p.peak_bytes <= limit:
    return
  per_example = p.temp_bytes / (p.batch_size / p.devices / p.accumulate_steps)
  room = limit - (p.peak_bytes - p.temp_bytes)
  fits = max(0, int(room // per_example)) * p.devices * p.accumulate_steps if per_example else 0
  advice = (f"lower config.batch_size={p.batch_size} (temporaries are about "
            f"{size(per_example)} per example on a device: about {fits} would fit)")
  if not p.batch_norm:
    advice += (", or split it with config.accumulate_steps (now "
               f"{p.accumulate_steps}; the temporaries shrink about as many times)")
  raise ConfigError("batch_size", f"the train step needs {size(p.peak_bytes)} per device, "
                    f"over the limit of {size(limit)}: {advice}")
