"""Where the points of a sweep run: `local` (child processes on this machine), `ray` (one
Ray task per point, on a Ray cluster or an embedded local one) or `slurm` (one SLURM job
array per sweep, through submitit).

Every launcher runs the same thing for a point, `cnnjax.exp.point.PointProcess` (one
`cnnjax train` process), and reports only which points' processes have ended; the sweep
reads each point's state from its run directory. A launcher has `start(workdirs)` (once
per sweep, or per rung of successive halving), `ended()` -> {workdir: error or None} for
the points of the last start, and `close()`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnjax.errors import UsageError

NAMES = ("local", "ray", "slurm")


def make(name: str, root: Path, options: dict[str, Any]):
  """`options`: workers (local); cpu, gpu (ray, slurm); max_parallel (ray, slurm);
  partition, time (minutes) (slurm). Ray's launcher joins or starts its cluster here, so
  build it before anything imports JAX."""
  if name == "local":
    from cnnjax.exp.launchers.local import LocalLauncher
    return LocalLauncher(options.get("workers", 1))
  if name == "ray":
    from cnnjax.exp.launchers.ray_tasks import RayLauncher
    return RayLauncher(options.get("cpu", 1), options.get("gpu", 0), options.get("max_parallel"))
  if name == "slurm":
    from cnnjax.exp.launchers.slurm import SlurmLauncher
    return SlurmLauncher(root / ".slurm", cpu=options.get("cpu", 1), gpu=options.get("gpu", 0),
                         max_parallel=options.get("max_parallel"),
                         partition=options.get("partition"), time=options.get("time"))
  raise UsageError(f"--launcher {name!r} is not one of {', '.join(NAMES)}")


def gpu_memory_env(share: float) -> dict[str, str]:
  """A point that gets a fraction of a GPU limits JAX's preallocation to that fraction."""
  if 0 < share < 1:
    return {"XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.95 * share:.3f}"}
  return {}
