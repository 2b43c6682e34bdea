"""Mapping the pure per-device steps over local devices.

Two modes, chosen by `config.parallel`, run the same step functions:
  "pmap"       `jax.pmap`: state replicated on a leading device axis, batches split into
               (devices, per-device batch).
  "shard_map"  `jax.shard_map` inside `jax.jit` over a one-axis device mesh (JAX's
               successor to pmap): state replicated by sharding, batches sharded.
In both, the device axis is named AXIS: gradients and metrics are reduced over it and
BatchNorm averages its statistics over it.
"""
from __future__ import annotations

import functools
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from cnnjax.errors import ConfigError
from cnnjax.train import steps

AXIS = "batch"  # The device axis name the steps and BatchNorm reduce over.
MODES = ("pmap", "shard_map")


def select_devices(num_devices: int, cpu_origin: str = "") -> list:
  """The first `num_devices` local devices (0 = all of them). `cpu_origin` says what set
  the CPU device count (see `runtime.use_cpu_devices`), for the error message."""
  devices = jax.local_devices()
  if num_devices > len(devices):
    platform = devices[0].platform
    origin = f", count set by {cpu_origin}" if cpu_origin and platform == "cpu" else ""
    raise ConfigError("num_devices", f"asks for {num_devices} devices but this process has "
                      f"{len(devices)} ({platform}{origin}); use 0 for all")
  return devices[:num_devices or len(devices)]


def padded_batch_size(batch_size: int, num_devices: int, pad: bool = False) -> int:
  """The global batch size the devices get: `batch_size`, or with `pad` the next multiple
  of the device count (the padding is masked out); without `pad`, a batch that does not
  split evenly is a ConfigError."""
  if batch_size % num_devices and not pad:
    raise ConfigError("batch_size", f"{batch_size} does not split evenly over {num_devices} "
                      f"devices; use a multiple of {num_devices}, set config.num_devices, or "
                      f"set config.pad_batch=True")
  return -(-batch_size // num_devices) * num_devices


def _train_and_accumulate(state, metrics, batch, **kwargs):
  state, step_metrics = steps.train_step(state, batch, **kwargs)
  return state, metrics.merge(step_metrics)


def _eval_and_accumulate(state, metrics, batch, **kwargs):
  """This device's examples only: no collective per batch, so devices do not wait for
  each other; `DeviceMap.eval_total` combines the devices once at the end."""
  return metrics.merge(steps.eval_step(state, batch, axis_name=None, **kwargs))


def _combine(metrics):
  """Every device's metrics, merged (CLU's all_gather + reduce): the same on all."""
  return jax.lax.all_gather(metrics, AXIS).reduce()


def _step_functions(config, num_classes: int):
  train = functools.partial(
      _train_and_accumulate, num_classes=num_classes, label_smoothing=config.label_smoothing,
      mean=config.data.mean, std=config.data.std, augment_shift=config.data.augment_shift,
      augment_rotate=config.data.augment_rotate, augment_scale=config.data.augment_scale,
      mixup_alpha=config.data.mixup_alpha, cutmix_alpha=config.data.cutmix_alpha,
      accumulate_steps=config.accumulate_steps, ema_decay=config.optimizer.ema_decay,
      axis_name=AXIS)
  evaluate = functools.partial(_eval_and_accumulate, mean=config.data.mean, std=config.data.std)
  return train, evaluate


class DeviceMap:
  """Places state and batches on the devices and maps the steps over them.

  `train_step(state, metrics, batch)` returns the new state and the metrics merged with
  this step's (they accumulate on the devices: the host does not wait for a step, except
  on simulated CPU devices, see `host_devices`);
  `eval_step(state, metrics, batch)` merges each device's share of the batch into that
  device's metrics (from `eval_metrics()`); `eval_total(metrics)` combines the devices
  once, so an evaluation synchronises the devices and reads its result once.
  """

  def __init__(self, mode: str, devices, config, num_classes: int):
    if mode not in MODES:
      raise ConfigError("parallel", f"{mode!r} is not one of {', '.join(map(repr, MODES))}")
    self.mode, self.devices, self.n = mode, list(devices), len(devices)
    # Several simulated CPU devices (config.cpu_devices, or XLA_FLAGS=
    # --xla_force_host_platform_device_count) share one thread pool; with steps queued
    # ahead, their collectives can take every thread while a device still waits to
    # start, and XLA aborts the stuck rendezvous. Their steps run one at a time.
    self.host_devices = self.n > 1 and self.devices[0].platform == "cpu"
    self.processes = jax.process_count()
    self.global_n = self.n * self.processes  # Every process brings its local devices.
    self.mesh = Mesh(np.array(self.devices if self.processes == 1 else jax.devices()), (AXIS,))
    self._local_mesh = Mesh(np.array(self.devices), (AXIS,))
    self._train_compiled = None  # Set by compile_ahead's thread; waited for once.
    self._compiling = None  # That thread.
    train, evaluate = _step_functions(config, num_classes)
    if mode == "pmap":
      # With several processes pmap spans every process's local devices.
      pmap_devices = self.devices if self.processes == 1 else None
      self._train_step = jax.pmap(train, axis_name=AXIS, devices=pmap_devices, donate_argnums=(0, 1))
      self._eval_step = jax.pmap(evaluate, axis_name=AXIS, devices=pmap_devices,
                                 donate_argnums=(1,))
      self._combine = jax.pmap(_combine, axis_name=AXIS, devices=pmap_devices)
    else:
      # Outputs are replicated because the steps reduce over AXIS (pmean, all_gather in
      # CLU, BatchNorm); JAX cannot infer that through CLU's gather, so the check is off
      # and the equality tests (1 vs 8 devices, pmap vs shard_map) stand for it.
      sharded = lambda f, n_in: jax.shard_map(
          f, mesh=self.mesh, in_specs=(P(),) * (n_in - 1) + (P(AXIS),), out_specs=P(),
          check_vma=False)
      self._train_step = jax.jit(sharded(train, 3), donate_argnums=(0, 1))
      # Eval metrics are per device: a leading axis of one per device, sharded.
      own = lambda tree: jax.tree.map(lambda x: x[0], tree)
      per_device = jax.shard_map(
          lambda state, metrics, batch: jax.tree.map(
              lambda x: x[None], evaluate(state, own(metrics), batch)),
          mesh=self.mesh, in_specs=(P(), P(AXIS), P(AXIS)), out_specs=P(AXIS))
      self._eval_step = jax.jit(per_device, donate_argnums=(1,))
      self._combine = jax.jit(jax.shard_map(
          lambda metrics: _combine(own(metrics)), mesh=self.mesh, in_specs=P(AXIS),
          out_specs=P(), check_vma=False))

  def compile_ahead(self, state, metrics, train_batch, eval_batch=None) -> None:
    """Starts compiling the steps in a background thread: the train step for a state and
    train metrics like these (arrays or jax.ShapeDtypeStruct leaves, as `replicate` takes
    them) and a global batch like `train_batch`, then the eval step for a global batch
    like `eval_batch` (if given). The host prepares the run meanwhile (XLA compiles
    without holding Python's lock); the first `train_step` waits for the train step's
    compilation, then finds the program in JAX's caches. Arguments unlike the first
    step's only cost the time: that step compiles its own. With several processes this
    does nothing."""
    if self.processes > 1:
      return
    jobs = [self.lowered_train_step(state, metrics, train_batch)]
    if eval_batch is not None:
      jobs.append(functools.partial(self._eval_step.lower, self.replicated_shapes(state),
                                    self.eval_metrics(), self.split(eval_batch)))
    self._train_compiled = threading.Event()

    def compile_all(train_compiled: threading.Event):
      for lower in jobs:
        try:
          lower().compile()
        except Exception:  # pylint: disable=broad-except
          pass  # The step compiles again when used and raises it where the run reports errors.
        train_compiled.set()

    self._compiling = threading.Thread(target=compile_all, args=(self._train_compiled,),
                                       name="compile-ahead", daemon=True)
    self._compiling.start()

  def lowered_train_step(self, state, metrics, train_batch):
    """A function that lowers the train step for a state, train metrics and a global
    batch like these (as `compile_ahead` takes them): `fn().compile()` is the program
    the devices run, with XLA's cost and memory analyses."""
    return functools.partial(self._train_step.lower, self.replicated_shapes(state),
                             self.replicated_shapes(metrics), self.split(train_batch))

  def finish_compiling(self) -> None:
    """Waits for `compile_ahead`'s thread: a process that ends (an error before the first
    step, say) while it is inside XLA's compiler is aborted by the C++ runtime."""
    if self._compiling is not None:
      self._compiling.join()

  def train_step(self, state, metrics, batch):
    if self._train_compiled is not None:
      self._train_compiled.wait()
      self._train_compiled = None
    if self.host_devices:
      jax.block_until_ready(metrics)  # The previous step first (see host_devices).
    return self._train_step(state, metrics, batch)

  def eval_metrics(self):
    """Empty eval metrics, one for each device (not replicas: each device adds its own)."""
    empty = steps.EvalMetrics.empty()
    if self.mode == "pmap":
      return self.replicate(empty)
    return self._sharded(self._stacked(empty))

  def eval_step(self, state, metrics, batch):
    # No collective: steps may queue ahead even on simulated CPU devices.
    return self._eval_step(state, metrics, batch)

  def eval_total(self, metrics):
    """The devices' eval metrics combined, replicated (read it with `unreplicate`)."""
    if self.host_devices:
      jax.block_until_ready(metrics)  # Every device's steps first (see host_devices).
    return self._combine(metrics)

  def replicate(self, tree):
    """A copy of `tree` on every device."""
    if self.mode == "pmap":
      # Stacked on the host: broadcasting on a device compiles a program per shape.
      return jax.device_put(self._stacked(tree), NamedSharding(self._local_mesh, P(AXIS)))
    return jax.device_put(jax.tree.map(jnp.asarray, tree), NamedSharding(self.mesh, P()))

  def replicated_shapes(self, tree):
    """The shapes, dtypes and placement of `replicate(tree)`, placing nothing (`tree` may
    hold jax.ShapeDtypeStruct leaves)."""
    shapes = jax.eval_shape(lambda t: t, tree)
    if self.mode == "pmap":  # Stacked from host copies, which are never weakly typed.
      sharding = NamedSharding(self._local_mesh, P(AXIS))
      return jax.tree.map(
          lambda x: jax.ShapeDtypeStruct((self.n, *x.shape), x.dtype, sharding=sharding), shapes)
    sharding = NamedSharding(self.mesh, P())
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding,
                                                       weak_type=x.weak_type), shapes)

  def _stacked(self, tree):
    """`tree` stacked n times on the host, one copy per local device."""
    return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (self.n, *np.shape(x))), tree)

  def unreplicate(self, tree):
    """This process's first copy of a replicated tree (pmap: host arrays).

    Read from the local shard: indexing a global array would be a collective, and with
    several processes such eager collectives can be issued in different orders and hang.
    pmap's shard keeps a device axis of one, dropped on the host: on the device that is a
    program to compile for every shape in the tree.
    """
    if self.mode == "pmap":
      return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], tree)
    return tree if self.processes == 1 else jax.tree.map(lambda x: x.addressable_data(0), tree)

  def split(self, batch: dict[str, np.ndarray]):
    """This process's share of a global batch (the only part it reads, see
    distributed.process_slice; with one process, the whole batch) as the steps take it:
    equal slices, one per local device."""
    if self.mode == "pmap":
      return {k: v.reshape((self.n, -1, *v.shape[1:])) for k, v in batch.items()}
    return self._sharded(batch)

  def _sharded(self, tree):
    """This process's arrays, whose leading axis its local devices split, as global arrays
    sharded over the device axis (shard_map)."""
    sharding = NamedSharding(self.mesh, P(AXIS))
    if self.processes == 1:
      return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), tree)
