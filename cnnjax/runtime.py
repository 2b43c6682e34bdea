"""Process-wide settings: those of a `cnnjax` command's process as it starts
(`start_command`), and those a run applies before JAX starts its backends. Library code
elsewhere leaves the process as it found it."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import signal
import sys

from cnnjax.errors import ConfigError


def start_command(command: str) -> None:
  """What the `cnnjax` executable sets up before running `command`:

  - `train` keeps its stop-signal handlers for the life of the process
    (cnnjax.signals); `sweep` stops on SIGTERM as on Ctrl-C (KeyboardInterrupt),
    asking its points to checkpoint and stop;
  - absl's flags are parsed (to their defaults): Grain's worker processes
    (config.data.workers) read them;
  - Orbax's notice that a reader opened checkpoints read-only, which is how every
    command but `train` opens them, is not printed.
  """
  if command == "train":
    from cnnjax import signals
    signals.install_for_process()
  if command == "sweep":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(sys.argv[:1], known_only=True)
  logging.getLogger("absl").addFilter(_read_only_notice)


def _read_only_notice(record: logging.LogRecord) -> bool:
  return not record.getMessage().startswith("Given directory is read only")

_FORCE_COUNT = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


def _environment_cpu_devices() -> str:
  """The environment setting that fixes the CPU device count of this process, or ""."""
  match = _FORCE_COUNT.search(os.environ.get("XLA_FLAGS", ""))
  if os.environ.get("JAX_NUM_CPU_DEVICES"):  # JAX's own setting wins over XLA_FLAGS.
    return f"JAX_NUM_CPU_DEVICES={os.environ['JAX_NUM_CPU_DEVICES']}"
  return f"XLA_FLAGS={match.group(0)}" if match else ""


def use_cpu_devices(n: int) -> str:
  """Asks JAX for `n` simulated CPU devices (config.cpu_devices) and says what decided
  the count, for error messages and the run record.

  The environment of the command wins: with XLA_FLAGS=--xla_force_host_platform_device_count=N
  or JAX_NUM_CPU_DEVICES=N set, config.cpu_devices is not applied (a config file's
  default must not override what the person running it asked for). 0 leaves JAX's
  default, one CPU device. Only possible before JAX starts its backends: later, a
  different count than the one running is an error that names the field.
  """
  import jax
  environment = _environment_cpu_devices()
  if environment:
    return environment
  if not n:
    return "JAX's default of one CPU device; config.cpu_devices=N simulates N"
  origin = f"config.cpu_devices={n}"
  if jax.config.jax_num_cpu_devices == n:
    return origin
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError:
    running = len(jax.devices("cpu"))
    if running != n:
      raise ConfigError("cpu_devices", f"JAX already runs {running} CPU devices in this "
                        f"process; set it before JAX starts (a fresh `cnnjax train`), or "
                        f"start Python with XLA_FLAGS=--xla_force_host_platform_device_count={n}")
  return origin


def use_compilation_cache() -> None:
  """Keeps compiled programs in JAX's persistent cache, so running a config again (another
  seed, a resume, a sweep point that differs only in data) skips most of the compilation.

  Where: $JAX_COMPILATION_CACHE_DIR if set, else $CNNJAX_CACHE_DIR/jax (default
  ~/.cache/cnnjax/jax). JAX_ENABLE_COMPILATION_CACHE=false turns it off.
  """
  import jax

  from cnnjax.data.fetch import cache_dir
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_MALLOC_ENVIRONMENT = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                       "MALLOC_TOP_PAD_")


def keep_freed_memory() -> str:
  """Has glibc's malloc keep the memory this process frees for its next allocations
  (config.keep_freed_memory), and says what it did.

  XLA on a CPU allocates a step's buffers and frees them at its end. By default glibc
  serves large blocks with mmap and returns them, and trims the top of its heap, to the
  OS: the next step then touches fresh pages, page faults on every step in some
  processes. Here large blocks come from the heap (M_MMAP_MAX 0) and the main heap is
  never trimmed below 2 GiB free (M_TRIM_THRESHOLD). Whether that helps depends on the
  network: its threads' own heaps (glibc's per-thread arenas, which no setting keeps) may
  then take the large blocks instead; benchmarks/allocator.py measures it, and
  docs/performance.md has what it measured. A MALLOC_* setting of glibc in the
  environment wins; other C libraries are left alone.
  """
  chosen = [name for name in _MALLOC_ENVIRONMENT if name in os.environ]
  if chosen:
    return f"left to the environment ({', '.join(chosen)})"
  libc = ctypes.CDLL(ctypes.util.find_library("c"))
  mallopt = getattr(libc, "mallopt", None)
  if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
    return "not glibc: left alone"
  if not (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)):
    return "glibc refused mallopt: left alone"
  return "glibc keeps freed memory (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB)"


def apply_keep_freed_memory(config, devices) -> str:
  """What config.keep_freed_memory asks of a run on `devices` (`keep_freed_memory` on CPU
  devices when set), and says what was done."""
  if config.keep_freed_memory and devices[0].platform == "cpu":
    return keep_freed_memory()
  return "left alone (config.keep_freed_memory=False or not CPU devices)"
