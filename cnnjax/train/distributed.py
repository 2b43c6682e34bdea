"""Several processes (hosts) training one run: `jax.distributed.initialize`.

Process settings come from config.distributed, or from the environment so that one
config serves every process: CNNJAX_COORDINATOR (host:port of process 0),
CNNJAX_NUM_PROCESSES and CNNJAX_PROCESS_ID. `config.distributed.auto` lets JAX read
them from a cluster it knows (SLURM, Open MPI, Kubernetes JobSet, ...).
On CPUs the processes exchange data with gloo.
"""
from __future__ import annotations

import os

import jax

_initialized = False


def settings(config) -> dict | None:
  """Arguments for jax.distributed.initialize, {} for auto-detection, None when off."""
  d = config.distributed
  address = d.coordinator_address or os.environ.get("CNNJAX_COORDINATOR", "")
  if address:
    return {"coordinator_address": address,
            "num_processes": int(os.environ.get("CNNJAX_NUM_PROCESSES", d.num_processes)),
            "process_id": int(os.environ.get("CNNJAX_PROCESS_ID", d.process_id))}
  return {} if d.auto else None


def initialize(config) -> None:
  """Joins the run's processes (once per process; before JAX picks its devices)."""
  global _initialized
  args = settings(config)
  if args is None or _initialized:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**args)
  _initialized = True


def is_writer() -> bool:
  """Only process 0 writes records, metrics and summaries."""
  return jax.process_index() == 0


def process_slice(global_size: int) -> slice:
  """This process's consecutive share of a global batch (devices are process-major): the
  positions of the only examples it reads (see data.pipeline)."""
  per = global_size // jax.process_count()
  return slice(jax.process_index() * per, (jax.process_index() + 1) * per)
