"""Mapping the per-device steps over local devices with `jax.pmap`.

State is replicated (a leading device axis); each global batch is split into equal
per-device slices (`data.pipeline.shard`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cnnjax.errors import ConfigError
from cnnjax.train import steps

AXIS = "batch"  # The device axis name the steps and BatchNorm reduce over.


def select_devices(num_devices: int) -> list:
  """The first `num_devices` local devices (0 = all of them)."""
  devices = jax.local_devices()
  if num_devices > len(devices):
    raise ConfigError("num_devices", f"asks for {num_devices} devices but this process has "
                      f"{len(devices)} ({devices[0].platform}); use 0 for all")
  return devices[:num_devices or len(devices)]


def check_divisible(batch_size: int, num_devices: int, field: str = "batch_size") -> None:
  if batch_size % num_devices:
    raise ConfigError(field, f"{batch_size} does not split evenly over {num_devices} devices; "
                      f"use a multiple of {num_devices} or set config.num_devices")


def replicate(tree, devices):
  """A copy of `tree` on every device, stacked on a leading device axis."""
  sharding = NamedSharding(Mesh(np.array(devices), ("devices",)), PartitionSpec("devices"))
  n = len(devices)
  return jax.tree.map(
      lambda x: jax.device_put(jnp.broadcast_to(jnp.asarray(x), (n, *jnp.shape(x))), sharding), tree)


def unreplicate(tree):
  """The first device's copy of a replicated tree."""
  return jax.tree.map(lambda x: x[0], tree)


def _train_and_accumulate(state, metrics, batch, **kwargs):
  state, step_metrics = steps.train_step(state, batch, **kwargs)
  return state, metrics.merge(step_metrics)


def pmap_train_step(config, num_classes: int, devices):
  """(state, metrics, batch) -> (state, metrics merged with this step's), per device.

  Metrics accumulate on the devices, so the host never waits for a step to finish.
  """
  step = functools.partial(
      _train_and_accumulate, num_classes=num_classes, label_smoothing=config.label_smoothing,
      mean=config.data.mean, std=config.data.std, augment_shift=config.data.augment_shift,
      axis_name=AXIS)
  return jax.pmap(step, axis_name=AXIS, devices=devices, donate_argnums=(0, 1))


def pmap_eval_step(config, devices):
  step = functools.partial(steps.eval_step, mean=config.data.mean, std=config.data.std,
                           axis_name=AXIS)
  return jax.pmap(step, axis_name=AXIS, devices=devices)
