"""A data set larger than a training process should hold, streamed from ArrayRecord files.

  python benchmarks/streaming.py --size-gib 4 [--dir /tmp/stream] [--keep]

Writes an ArrayRecord data set of about that size (random 64x64x3 uint8 images in 10
classes, written a chunk at a time, never whole in memory) in the format `cnnjax data
convert` writes; then, each in a process of its own, (1) the input pipeline alone reads
one epoch of shuffled training batches, and (2) `cnnjax train` trains the talk CNN for one
epoch on it. Last lines: `peak_rss_mib=` (the larger of the two processes) and
`images_per_second=` for the pipeline alone and for training. The goal: peak RSS under
2 GiB whatever the data set's size.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (64, 64, 3)
CLASSES = 10


class _Images:
  """Random images generated per slice from a seed: the writer asks for chunks."""

  def __init__(self, n: int, seed: int):
    self.n, self.seed = n, seed

  def __len__(self) -> int:
    return self.n

  def __getitem__(self, index: slice) -> np.ndarray:
    start, stop, _ = index.indices(self.n)
    rng = np.random.default_rng([self.seed, start])
    return rng.integers(0, 256, (stop - start, *SHAPE), dtype=np.uint8)


def write(folder: Path, size_gib: float) -> int:
  from cnnjax.data import array_record
  folder.mkdir(parents=True, exist_ok=True)
  train = int(size_gib * 2**30 // np.prod(SHAPE))
  test = min(5000, max(100, train // 50))
  rng = np.random.default_rng(0)
  splits = {}
  for split, n, seed in (("train", train, 1), ("test", test, 2)):
    labels = rng.integers(0, CLASSES, n).astype(np.int32)
    splits[split] = array_record.write_split(folder, split, _Images(n, seed), labels)
  array_record.write_index(folder, SHAPE, np.uint8, CLASSES, [], splits, "benchmarks/streaming.py")
  return train


def pipeline_worker(folder: str, batch: int, threads: int) -> dict:
  """One epoch of the input pipeline alone: shuffled global batches read from disk."""
  from cnnjax.data import array_record, pipeline
  images, labels, *_ = array_record.load(Path(folder), read_threads=threads)
  start, seen = time.perf_counter(), 0
  for b in pipeline.train_batches(images, labels, batch, seed=0, epoch=0):
    seen += len(b["labels"])
  seconds = time.perf_counter() - start
  return {"images": seen, "seconds": seconds, "images_per_second": seen / seconds,
          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child_peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--size-gib", type=float, default=4.0)
  parser.add_argument("--dir", help="where to write the data set (default: a temp folder)")
  parser.add_argument("--keep", action="store_true", help="keep the data set and the run")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--read-threads", type=int, default=4)
  parser.add_argument("--worker", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    print(json.dumps(pipeline_worker(args.worker, args.batch, args.read_threads)))
    return

  scratch = Path(args.dir or tempfile.mkdtemp(prefix="cnnjax-stream-"))
  folder = scratch / "data"
  start = time.perf_counter()
  train = write(folder, args.size_gib)
  size = sum(p.stat().st_size for p in folder.iterdir()) / 2**30
  print(f"wrote {train:,} training images of {SHAPE} ({size:.2f} GiB on disk) in "
        f"{time.perf_counter() - start:.0f} s to {folder}", flush=True)

  out = subprocess.run([sys.executable, __file__, "--worker", str(folder), "--batch",
                        str(args.batch), "--read-threads", str(args.read_threads)],
                       capture_output=True, text=True, check=True)
  alone = json.loads(out.stdout.splitlines()[-1])
  print(f"input pipeline alone: {alone['images']:,} images in {alone['seconds']:.1f} s, "
        f"peak RSS {alone['peak_rss_mib']:,.0f} MiB", flush=True)

  workdir = scratch / "run"
  command = [sys.executable, "-m", "cnnjax", "train", "--config", str(ROOT / "configs/mnist_talk.py"),
             "--workdir", str(workdir), "--config.data.source=array_record",
             f"--config.data.dir={folder}", "--config.num_epochs=1",
             "--config.data.validation_examples=0", f"--config.data.num_classes={CLASSES}",
             "--config.data.mean=0.5", "--config.data.std=0.29",
             f"--config.batch_size={args.batch}", f"--config.data.read_threads={args.read_threads}"]
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  train_rss = _child_peak_rss_mib()  # The largest child so far: the worker or the training.
  metrics = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  trained = metrics[-1]["images_per_second"]
  print(f"training one epoch (talk CNN, batch {args.batch}): {trained:,.0f} images/s", flush=True)
  if not args.keep:
    shutil.rmtree(scratch)
  peak = max(alone["peak_rss_mib"], train_rss)
  print(f"data_set_gib={size:.2f}")
  print(f"peak_rss_mib={peak:.0f}  ({'met' if peak < 2048 else 'not met'}: under 2 GiB)")
  print(f"images_per_second={alone['images_per_second']:.0f} (input pipeline alone)")
  print(f"images_per_second={trained:.0f} (training)")


if __name__ == "__main__":
  main()
