"""Process-wide JAX settings a run applies before JAX starts its backends."""
from __future__ import annotations

import os

import jax

from cnnjax.data.fetch import cache_dir
from cnnjax.errors import ConfigError


def use_cpu_devices(n: int) -> None:
  """Asks JAX for `n` simulated CPU devices (config.cpu_devices; 0 leaves JAX's choice).

  Only possible before JAX starts its backends: later, a different count than the one
  running is an error that names the field.
  """
  if not n or jax.config.jax_num_cpu_devices == n:
    return
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError:
    running = len(jax.devices("cpu"))
    if running != n:
      raise ConfigError("cpu_devices", f"JAX already runs {running} CPU devices in this "
                        f"process; set it before JAX starts (a fresh `cnnjax train`), or "
                        f"start Python with XLA_FLAGS=--xla_force_host_platform_device_count={n}")


def use_compilation_cache() -> None:
  """Keeps compiled programs in JAX's persistent cache, so running a config again (another
  seed, a resume, a sweep point that differs only in data) skips most of the compilation:
  about 1.5 of the 20 seconds of configs/mnist_fast.py on a 2-core CPU.

  Where: $JAX_COMPILATION_CACHE_DIR if set, else $CNNJAX_CACHE_DIR/jax (default
  ~/.cache/cnnjax/jax). JAX_ENABLE_COMPILATION_CACHE=false turns it off.
  """
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
