"""Two processes with 4 CPU devices each (gloo) train exactly as one process with 8."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from cnnjax import config as config_lib
from cnnjax.data import pipeline, streaming, transforms
from cnnjax.models.layers import example_keys
from cnnjax.train import distributed, loop
from helpers import ROOT, latest_checkpoint

TINY = str(ROOT / "configs" / "tiny.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _latest_step(workdir):
  return latest_checkpoint(workdir)[0]


def _latest(workdir):
  return latest_checkpoint(workdir)[1]


def _two_processes(workdir, data_dir, mode, pause=""):
  port = _free_port()
  procs = []
  for pid in range(2):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               CNNJAX_COORDINATOR=f"127.0.0.1:{port}", CNNJAX_NUM_PROCESSES="2",
               CNNJAX_PROCESS_ID=str(pid), CNNJAX_PAUSE_AT=pause)
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "cnnjax", "train", "--config", TINY, "--workdir", str(workdir),
         f"--config.data.dir={data_dir}", f"--config.parallel={mode}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  return procs


@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
@pytest.mark.integration
def test_two_processes_of_four_devices_equal_one_process_of_eight(mode, tiny_data_dir, tmp_path):
  overrides = {"data.dir": str(tiny_data_dir), "parallel": mode}
  loop.train_and_evaluate(config_lib.load(TINY, overrides), tmp_path / "one")
  if mode == "pmap":  # Both processes killed after their first checkpoint: resume below.
    procs = _two_processes(tmp_path / "two", tiny_data_dir, mode, pause="checkpoint:1")
    for proc in procs:
      for line in proc.stdout:
        if "paused at checkpoint:1" in line:
          break
    for proc in procs:
      proc.kill()
      proc.wait()
    assert _latest_step(tmp_path / "two") == 16
  procs = _two_processes(tmp_path / "two", tiny_data_dir, mode)
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  run = json.loads((tmp_path / "two" / "run.json").read_text())
  assert run["processes"] == 2 and run["global_devices"] == 8
  a, b = _latest(tmp_path / "one"), _latest(tmp_path / "two")
  diff = max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a["state"]),
                                                          jax.tree.leaves(b["state"])))
  print(f"max |param| difference, 2 processes x 4 devices vs 1 x 8, {mode}: {diff:.3g}")
  assert diff <= 1e-5
  lines = lambda w: [json.loads(l) for l in (w / "metrics.jsonl").read_text().splitlines()]
  for x, y in zip(lines(tmp_path / "one"), lines(tmp_path / "two")):
    assert x["step"] == y["step"] and abs(x["val_accuracy"] - y["val_accuracy"]) < 1e-6
    assert abs(x["train_loss"] - y["train_loss"]) < 1e-5


class _CountedArray(streaming.StreamingArray):
  """A streaming array over `array` that records the rows of every read."""

  def __init__(self, array: np.ndarray):
    self.array, self.reads = array, []
    super().__init__(array.shape[1:], array.dtype, np.arange(len(array)), read_threads=2,
                     workers=0)

  def _read(self, rows):
    self.reads.append(tuple(rows.tolist()))
    return self.array[rows]


def _process_shares(monkeypatch, size: int, images, read) -> tuple[list, list]:
  """Per fake process of two: its share of each batch and the rows its source read."""
  batches, reads = [], []
  for index in range(2):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: index)
    source = _CountedArray(images)
    batches.append(list(read(source, distributed.process_slice(size))))
    reads.append(sorted(r for r in source.reads if r))
  return batches, reads


def _joined(halves) -> dict:
  return {k: np.concatenate([h[k] for h in halves]) for k in halves[0]}


def test_each_process_reads_only_its_share_and_the_shares_make_the_global_batches(monkeypatch):
  """Two processes of two devices, batch 10 padded to 12: process 0 reads positions 0-5 of
  each global batch, process 1 positions 6-9 (and pads 2); together, after the per-example
  shifts, exactly the one-process batches."""
  images = np.random.default_rng(0).integers(0, 256, (53, 6, 6, 1), dtype=np.uint8)
  labels = np.random.default_rng(1).integers(0, 4, 53).astype(np.int32)
  whole = [pipeline.pad(b, 12) for b in pipeline.train_batches(images, labels, 10, 1, 3, 1)]
  batches, reads = _process_shares(monkeypatch, 12, images, lambda source, share: (
      pipeline.train_batches(source, labels, 10, 1, 3, 1, padded_size=12, share=share)))
  order = pipeline.epoch_order(1, 3, 53)
  for index, share in enumerate([slice(0, 6), slice(6, 10)]):
    assert reads[index] == sorted(tuple(order[s * 10:(s + 1) * 10][share]) for s in range(1, 5))
  key = jax.random.key(5)
  shift = jax.jit(lambda x, ids: transforms.random_shift(x, jax.vmap(
      lambda i: jax.random.fold_in(key, i))(ids), 2))
  assert len(whole) == len(batches[0]) == len(batches[1]) == 4
  for one, halves in zip(whole, zip(*batches)):
    joined = _joined(halves)
    assert joined.keys() == one.keys() == {"images", "labels", "mask"}
    for k in one:
      assert joined[k].dtype == one[k].dtype
      np.testing.assert_array_equal(joined[k], one[k])
    # Each example's shift comes from its global position (as in the train step).
    shifted = [shift(h["images"], 6 * i + np.arange(6)) for i, h in enumerate(halves)]
    np.testing.assert_array_equal(
        np.concatenate(shifted), transforms.random_shift(one["images"], example_keys(key, 12, None), 2))


def test_each_process_reads_only_its_share_of_the_eval_batches(monkeypatch):
  """17 examples in eval batches of 12: in the second, process 1's share is all padding."""
  images = np.random.default_rng(0).integers(0, 256, (17, 3, 1), dtype=np.uint8)
  labels = np.arange(17, dtype=np.int32)
  whole = list(pipeline.eval_batches(images, labels, 12))
  batches, reads = _process_shares(monkeypatch, 12, images, lambda source, share: (
      pipeline.eval_batches(source, labels, 12, share)))
  assert reads == [[tuple(range(6)), tuple(range(12, 17))], [tuple(range(6, 12))]]
  for one, halves in zip(whole, zip(*batches), strict=True):
    joined = _joined(halves)
    assert joined.keys() == one.keys()
    for k in one:
      np.testing.assert_array_equal(joined[k], one[k])
