
import os
import platform
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest

from cnnjax import models, runtime
from cnnjax.data import pipeline
from cnnjax.train import parallel, steps
from cnnjax.train.optim import create_optimizer
from cnnjax.train.state import create_train_state
from helpers import NUM_DEVICES, synthetic_digits, train_steps


def test_eight_cpu_devices_are_simulated():
  assert jax.local_device_count() == NUM_DEVICES  # Never skipped: conftest sets them up.


def _setup(config, num_devices, mode="pmap"):
  """(device map, replicated initial state, replicated empty metrics)."""
  dmap = parallel.DeviceMap(mode, parallel.select_devices(num_devices), config, 4)
  model = models.build(config.model, 4, (12, 12, 1), parallel.AXIS)
  tx, _ = create_optimizer(config.optimizer, steps_per_epoch=10, num_epochs=2)
  state = create_train_state(model, (12, 12, 1), tx, config.seed)
  return dmap, dmap.replicate(state), dmap.replicate(steps.TrainMetrics.empty())


def _batches(n_steps, batch_size=16):
  images, labels = synthetic_digits(n_steps * batch_size, seed=5)
  for i in range(n_steps):
    sl = slice(i * batch_size, (i + 1) * batch_size)
    yield {"images": images[sl][..., None], "labels": labels[sl].astype(np.int32)}


def test_train_steps_lower_the_loss(tiny_config):
  dmap, rstate, _ = _setup(tiny_config, 1)
  batch = dmap.split(next(_batches(1)))
  losses = []
  for _ in range(5):
    rstate, m = dmap.train_step(rstate, dmap.replicate(steps.TrainMetrics.empty()), batch)
    losses.append(float(dmap.unreplicate(m).compute()["loss"]))
  assert losses[-1] < losses[0]


MAX_ABS_DIFF = {}  # Filled by the equality test; printed with -s for the record.


@pytest.mark.parametrize("mode, n", [("pmap", NUM_DEVICES), ("shard_map", NUM_DEVICES),
                                     ("shard_map", 1)])
def test_devices_and_modes_equal_one_pmapped_device_on_the_same_global_batches(tiny_config, mode, n):
  """BatchNorm over the global batch, dropout and shifts drawn per example: neither the
  split over devices nor the mapping (pmap, shard_map) may change the result."""
  results = {}
  for key, (m, devices) in {"reference": ("pmap", 1), "other": (mode, n)}.items():
    dmap, rstate, rmetrics = _setup(tiny_config, devices, m)
    for batch in _batches(10):
      rstate, rmetrics = dmap.train_step(rstate, rmetrics, dmap.split(batch))
    results[key] = jax.device_get(dmap.unreplicate((rstate, rmetrics)))
  (s1, m1), (s8, m8) = results["reference"], results["other"]
  assert int(s1.step) == int(s8.step) == 10
  # float32 sums in another order: agree to 1e-5, not bit for bit.
  diffs = [np.max(np.abs(a - b)) for a, b in zip(
      jax.tree.leaves((s1.params, s1.batch_stats, s1.opt_state)),
      jax.tree.leaves((s8.params, s8.batch_stats, s8.opt_state)))]
  MAX_ABS_DIFF[f"{mode} x{n}"] = float(max(diffs))
  print(f"max |param - reference| after 10 steps, {mode} on {n} devices: {max(diffs):.3g}")
  assert max(diffs) <= 1e-5
  np.testing.assert_allclose(m1.compute()["loss"], m8.compute()["loss"], rtol=1e-5)
  assert m1.compute()["accuracy"] == m8.compute()["accuracy"]
  assert not np.allclose(jax.tree.leaves(s1.batch_stats)[0], 0)  # BatchNorm statistics moved.


def test_dropout_masks_differ_between_devices_yet_not_with_the_split():
  from cnnjax.models.layers import Dropout
  layer = Dropout(0.5, parallel.AXIS)
  x = np.ones((NUM_DEVICES, 2, 64), np.float32)
  run = lambda xs, n: jax.pmap(
      lambda v: layer.apply({}, v, deterministic=False, rngs={"dropout": jax.random.key(0)}),
      axis_name=parallel.AXIS, devices=jax.local_devices()[:n])(xs)
  eight = np.asarray(run(x, NUM_DEVICES)).reshape(16, 64)
  one = np.asarray(run(x.reshape(1, 16, 64), 1)).reshape(16, 64)
  np.testing.assert_array_equal(eight, one)
  assert len({row.tobytes() for row in eight}) == 16  # Every example has its own mask.


@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
def test_eval_counts_every_example_once_on_eight_devices(tiny_config, mode):
  """Each device adds up its own share of the padded batches; combined once at the end,
  every example counts once and the padding not at all."""
  from cnnjax.train.loop import evaluate
  dmap, rstate, _ = _setup(tiny_config, NUM_DEVICES, mode)
  images, labels = synthetic_digits(101, seed=9)
  images = images[..., None]
  labels = labels.astype(np.int32)
  result = evaluate(dmap, rstate, images, labels, batch_size=24)
  assert result["test_examples"] == 101
  state = dmap.unreplicate(rstate)
  x = (images.astype(np.float32) / 255 - tiny_config.data.mean) / tiny_config.data.std
  logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, x)
  assert result["test_accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == labels))


def test_batch_that_does_not_split_over_devices_names_the_field():
  from cnnjax.errors import ConfigError
  with pytest.raises(ConfigError, match=r"config\.batch_size: 20 does not split evenly over 8"):
    parallel.padded_batch_size(20, 8)
  with pytest.raises(ConfigError, match=r"config\.num_devices: asks for 9 devices but this "
                                        r"process has 8"):
    parallel.select_devices(9)


@pytest.mark.parametrize("name", ["mnist_talk.py", "mnist.py"])
def test_the_mnist_models_on_eight_devices_equal_one_device(name):
  """10 steps of the real MNIST models (mnist.py: BatchNorm, dropout, shifts)."""
  from cnnjax import config as config_lib
  from helpers import ROOT
  config = config_lib.load(str(ROOT / "configs" / name))
  rng = np.random.default_rng(0)
  batches = [{"images": rng.integers(0, 255, (16, 28, 28, 1), dtype=np.uint8),
              "labels": rng.integers(0, 10, 16).astype(np.int32)} for _ in range(10)]
  results = [train_steps(config, mode, n, batches, 10, (28, 28, 1))
             for mode, n in (("pmap", 1), ("pmap", NUM_DEVICES), ("shard_map", NUM_DEVICES))]
  for other in results[1:]:
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(results[0][:2]),
                                                            jax.tree.leaves(other[:2])))
    print(f"{name}: max |param - 1 device| after 10 steps: {diff:.3g}")
    assert diff <= 3e-5  # float32 sums in another order; a wrong mask or statistic is >1e-3.
    np.testing.assert_allclose(results[0][2].compute()["loss"], other[2].compute()["loss"], rtol=1e-5)


def test_padded_batches_on_eight_devices_equal_one_device_without_padding(tiny_config):
  """config.pad_batch: 20 examples on 8 devices are padded to 24; the padding must count
  for nothing (loss, gradients, BatchNorm statistics, metrics)."""
  from cnnjax.data import pipeline
  tiny_config.pad_batch = True
  assert parallel.padded_batch_size(20, NUM_DEVICES, pad=True) == 24
  results = []
  for n in (1, NUM_DEVICES):
    dmap, rstate, rmetrics = _setup(tiny_config, n)
    for batch in _batches(10, batch_size=20):
      padded = pipeline.pad(batch, 24) if n > 1 else batch
      rstate, rmetrics = dmap.train_step(rstate, rmetrics, dmap.split(padded))
    results.append(jax.device_get(dmap.unreplicate((rstate, rmetrics))))
  (s1, m1), (s8, m8) = results
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves((s1.params, s1.batch_stats)), jax.tree.leaves((s8.params, s8.batch_stats))))
  print(f"max |param| difference, padded 20 -> 24 on 8 devices vs 1 device: {diff:.3g}")
  assert diff <= 1e-5
  assert int(m8.accuracy.count) == int(m1.accuracy.count) == 200  # Padding not counted.
  np.testing.assert_allclose(m1.compute()["loss"], m8.compute()["loss"], rtol=1e-5)


def test_a_run_with_a_padded_batch_trains(tiny_config, tmp_path):
  from cnnjax.train.loop import train_and_evaluate
  tiny_config.batch_size, tiny_config.pad_batch, tiny_config.num_epochs = 20, True, 1
  summary = train_and_evaluate(tiny_config, tmp_path / "run")
  assert summary["status"] == "finished" and summary["steps"] == (288 - 32) // 20


def test_initial_state_compiled_without_optimizations_matches_plain_init(tiny_config):
  """create_train_state compiles init with XLA's optimizations off (seconds faster on
  CPU); the parameters must agree with Flax's own init to float32 rounding."""
  import jax.numpy as jnp
  model = models.build(tiny_config.model, 10, (28, 28, 1))
  state = create_train_state(model, (28, 28, 1), create_optimizer(tiny_config.optimizer, 5, 1)[0], 7)
  init_key, run_key = jax.random.split(jax.random.PRNGKey(7))
  expected = model.init(init_key, jnp.zeros((1, 28, 28, 1)), train=False)["params"]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               state.params, expected)
  np.testing.assert_array_equal(state.rng, run_key)
  assert int(state.step) == 0


def test_cpu_devices_once_jax_runs_must_match_the_running_count(monkeypatch):
  from cnnjax.errors import ConfigError
  jax.devices()  # JAX has started (with the 8 devices of conftest).
  monkeypatch.delenv("XLA_FLAGS")  # As if config.cpu_devices alone decided the count.
  assert "JAX's default" in runtime.use_cpu_devices(0)
  assert runtime.use_cpu_devices(NUM_DEVICES) == "config.cpu_devices=8"
  with pytest.raises(ConfigError, match=r"config\.cpu_devices: JAX already runs 8 CPU devices"):
    runtime.use_cpu_devices(2)


def test_the_environment_decides_the_cpu_device_count_and_errors_name_it(monkeypatch):
  from cnnjax.errors import ConfigError
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_foo=1 --xla_force_host_platform_device_count=8")
  origin = runtime.use_cpu_devices(2)  # configs/mnist.py's 2 does not override the command's 8.
  assert origin == "XLA_FLAGS=--xla_force_host_platform_device_count=8"
  assert len(parallel.select_devices(8, origin)) == 8
  with pytest.raises(ConfigError, match=r"config\.num_devices: asks for 9 devices but this "
                     r"process has 8 \(cpu, count set by XLA_FLAGS=--xla_force_host_platform"
                     r"_device_count=8\)"):
    parallel.select_devices(9, origin)
  monkeypatch.setenv("JAX_NUM_CPU_DEVICES", "8")
  assert runtime.use_cpu_devices(2) == "JAX_NUM_CPU_DEVICES=8"


_LOWERINGS = []  # Programs lowered for XLA while a test counts them.


def _on_duration(event: str, seconds: float, **kwargs) -> None:
  if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" and _LOWERINGS:
    _LOWERINGS[-1] += 1  # Lowered: to be compiled (or looked up in the persistent cache).


jax.monitoring.register_event_duration_secs_listener(_on_duration)


def _lowerings(run):
  """(what `run()` returns, the programs it lowered): lowering happens in the call, before
  anything is dispatched."""
  _LOWERINGS.append(0)
  try:
    result = run()
  finally:
    lowered = _LOWERINGS.pop()
  return result, lowered


def _first_step_lowerings(config, mode: str, n: int, batch, ahead_batch=None) -> tuple[int, int]:
  """Programs lowered by a DeviceMap's first train step on `batch` and its first eval
  step, after compiling both ahead for `ahead_batch` and the state's shapes (None:
  nothing ahead)."""
  from cnnjax.train.state import train_state_shapes
  dmap = parallel.DeviceMap(mode, parallel.select_devices(n), config, 4)
  model = models.build(config.model, 4, (12, 12, 1), parallel.AXIS)
  tx, _ = create_optimizer(config.optimizer, steps_per_epoch=10, num_epochs=2)
  if ahead_batch is not None:
    dmap.compile_ahead(train_state_shapes(model, (12, 12, 1), tx), steps.TrainMetrics.empty(),
                       ahead_batch, pipeline.pad(ahead_batch, len(ahead_batch["labels"])))
  rstate = dmap.replicate(create_train_state(model, (12, 12, 1), tx, config.seed))
  rmetrics = dmap.replicate(steps.TrainMetrics.empty())
  split, eval_split, eval_metrics = (
      dmap.split(batch), dmap.split(pipeline.pad(batch, len(batch["labels"]))), dmap.eval_metrics())
  for thread in threading.enumerate():  # Lowerings ahead are not the steps'.
    if thread.name == "compile-ahead":
      thread.join()
  (rstate, _), train = _lowerings(lambda: dmap.train_step(rstate, rmetrics, split))
  total, evaluate = _lowerings(lambda: dmap.eval_step(rstate, eval_metrics, eval_split))
  assert int(dmap.unreplicate(dmap.eval_total(total)).accuracy.count) == len(batch["labels"])
  return train, evaluate


@pytest.mark.parametrize("mode, n", [("pmap", 1), ("pmap", NUM_DEVICES), ("shard_map", NUM_DEVICES)])
def test_steps_compiled_ahead_are_not_compiled_again(tiny_config, mode, n):
  """compile_ahead from the state's shapes alone: the first real train and eval steps
  find their programs compiled. Each case builds a model no other test does, so that its
  programs are not in JAX's caches already."""
  batch = next(_batches(1))
  tiny_config.model.conv_features = (5,)
  assert _first_step_lowerings(tiny_config, mode, n, batch, ahead_batch=batch) == (0, 0)
  tiny_config.model.conv_features = (6,)
  assert _first_step_lowerings(tiny_config, mode, n, batch) == (1, 1)


def test_steps_compiled_ahead_for_another_batch_compile_their_own(tiny_config):
  tiny_config.model.conv_features = (7,)
  assert _first_step_lowerings(tiny_config, "pmap", 1, next(_batches(1, batch_size=16)),
                               ahead_batch=next(_batches(1, batch_size=8))) == (1, 1)


_PAGE_FAULTS = """
import resource, sys
import numpy as np
from cnnjax import runtime
if sys.argv[1] == "keep":
  print(runtime.keep_freed_memory())
def faults():
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(10):  # 64 MiB: above the largest block glibc ever takes from its heap.
    del_me = np.ones(64 << 20, np.uint8)
    del del_me
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()  # The first blocks are new to the process either way.
print(faults())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_stops_the_page_faults_of_freeing_and_allocating_again():
  """What XLA does every step on a CPU, with one 64 MiB buffer: by default each new block
  is fresh pages from the OS (a fault per page: at least 32 a block even with 2 MiB huge
  pages); kept, the heap's pages serve again."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
  run = lambda mode, extra={}: subprocess.run(
      [sys.executable, "-c", _PAGE_FAULTS, mode], capture_output=True, text=True, check=True,
      env={**env, **extra}).stdout.splitlines()
  assert int(run("default")[-1]) >= 10 * 32
  said, faults = run("keep")
  assert said == "glibc keeps freed memory (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB)"
  assert int(faults) < 32
  said, faults = run("keep", {"MALLOC_TRIM_THRESHOLD_": "1000000"})
  assert said == "left to the environment (MALLOC_TRIM_THRESHOLD_)"
  assert int(faults) >= 10 * 32
