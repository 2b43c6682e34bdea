"""The input pipeline: deterministic epoch order, global batches, eval padding.

Examples are arrays in memory (MNIST: 47 MB as uint8) or, for streaming sources (TFDS,
converted ArrayRecord sets), `streaming.StreamingArray`s that read only the rows a batch
asks for; the same seed gives the same batches from either. With several processes, each
reads only its `share` of every global batch (positions in it, see
`train.distributed.process_slice`): the global batches, their order and their padding are
those of one process, so the shares put together are exactly its batches. Pixels stay uint8
until the device (see `transforms`, which draws each example's randomness from its place
in the global batch), so each batch moves a quarter of the bytes of float32.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np

from cnnjax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class Dataset:
  train_images: np.ndarray  # (N, *spatial, C): uint8 pixels, or float32 (time series)
  train_labels: np.ndarray  # (N,) int32
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  location: str  # Where it was read from, for the run record.
  class_names: tuple[str, ...] = ()  # Label of each class number, where the data names them.
  val_images: np.ndarray | None = None  # Held out of the training data (see `hold_out`).
  val_labels: np.ndarray | None = None

  @property
  def has_validation(self) -> bool:
    return self.val_labels is not None and len(self.val_labels) > 0

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.train_images.shape[1:])

  def take_train(self, n: int) -> "Dataset":
    """The first n training examples (n = 0: all)."""
    if not n:
      return self
    return dataclasses.replace(self, train_images=rows(self.train_images, slice(0, n)),
                               train_labels=self.train_labels[:n])


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
  """Raises a DataError naming `where` (a file, or a data set and split) unless every label
  is a class number in [0, num_classes): any other label would train as an all-zero
  one-hot target and fall outside the confusion matrix instead of failing."""
  if len(labels) == 0:
    return
  low, high = int(labels.min()), int(labels.max())
  if low < 0 or high >= num_classes:
    raise DataError(f"{where}: label {low if low < 0 else high} is outside the {num_classes} "
                    f"classes of config.data.num_classes")


def rows(examples, index):
  """examples[index], without reading anything from a streaming array (its `subset`)."""
  return examples.subset(index) if hasattr(examples, "subset") else examples[index]


# Entropy that keeps the validation split's stream apart from the epoch orders.
_VALIDATION_STREAM = 0x76616C


def validation_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
  """Sorted indices of `n` examples stratified by class, fixed by `seed`.

  Each class gives its share of `n` (largest remainders round), drawn at random from
  its examples; the same labels, `n` and seed give the same indices anywhere.
  """
  classes, counts = np.unique(labels, return_counts=True)
  quota = counts * n / len(labels)
  take = np.floor(quota).astype(int)
  rest = n - int(take.sum())
  take[np.argsort(-(quota - take), kind="stable")[:rest]] += 1
  rng = np.random.default_rng([seed, _VALIDATION_STREAM])
  chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
  return np.sort(np.concatenate(chosen))


def hold_out(dataset: Dataset, n: int, seed: int) -> Dataset:
  """`dataset` with `n` training examples moved into its validation split (n = 0: none).
  The remaining training examples keep their order."""
  if not n:
    return dataset
  val = validation_indices(dataset.train_labels, n, seed)
  keep = np.ones(len(dataset.train_labels), bool)
  keep[val] = False
  return dataclasses.replace(
      dataset, train_images=rows(dataset.train_images, keep), train_labels=dataset.train_labels[keep],
      val_images=rows(dataset.train_images, val), val_labels=dataset.train_labels[val])


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
  """A permutation of range(n) fixed by (seed, epoch): reproducible, new each epoch."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def batch_size(batch_size: int, max_fraction: float, num_examples: int) -> int:
  """`batch_size`, capped at `max_fraction` of the examples (0 = no cap; at least 1)."""
  if not max_fraction:
    return batch_size
  return max(1, min(batch_size, int(num_examples * max_fraction)))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  return num_examples // batch_size  # The last partial batch is dropped.


def train_batches(images, labels: np.ndarray, batch_size: int, seed: int, epoch: int,
                  start_step: int = 0, padded_size: int = 0,
                  share: slice = slice(None)) -> Iterator[dict[str, np.ndarray]]:
  """Batches of one epoch, in its shuffled order, from `start_step` on: of each global
  batch of `batch_size` examples, zero-padded to `padded_size` when that is larger (see
  `pad`), the positions `share` (all by default). Only their examples are read; batches of
  a streaming array are read ahead by Grain (`read_ahead`), as the array asks."""
  order = epoch_order(seed, epoch, len(labels))
  size = max(batch_size, padded_size)

  def read(step: int) -> dict[str, np.ndarray]:
    examples = order[step * batch_size:(step + 1) * batch_size]
    return _read_share(images, labels, examples, size, share, masked=size > batch_size)

  return _batches(images, read, range(start_step, steps_per_epoch(len(labels), batch_size)))


def first_train_batch(images, labels: np.ndarray, batch_size: int, padded_size: int = 0,
                      share: slice = slice(None)) -> dict[str, np.ndarray]:
  """A batch with the keys, shapes and dtypes of those `train_batches` yields (the first
  examples, unshuffled): what to compile the train step for before training starts."""
  size = max(batch_size, padded_size)
  return _read_share(images, labels, np.arange(batch_size), size, share, masked=size > batch_size)


def first_eval_batch(images, labels: np.ndarray, batch_size: int,
                     share: slice = slice(None)) -> dict[str, np.ndarray]:
  """The first batch `eval_batches` yields: what to compile the eval step for ahead."""
  examples = np.arange(min(batch_size, len(labels)))
  return _read_share(images, labels, examples, batch_size, share, masked=True)


def _read_share(images, labels: np.ndarray, examples: np.ndarray, size: int, share: slice,
                masked: bool) -> dict[str, np.ndarray]:
  """Positions `share` of the global batch `examples` (indices) zero-padded to `size`:
  reads only the examples at those positions; with `masked`, "mask" is 0 on the padding."""
  first, last, _ = share.indices(size)
  local = examples[first:last]  # Positions past the examples are padding.
  batch = {"images": images[local], "labels": labels[local]}
  return pad(batch, last - first) if masked else batch


def _batches(images, read, items: Sequence) -> Iterator:
  """`read(item)` for each item: read ahead for a streaming array, as it asks; else as used."""
  if hasattr(images, "subset"):
    return read_ahead(read, items, images.read_threads, images.workers)
  return map(read, items)


def read_ahead(read, items: Sequence, threads: int, workers: int) -> Iterator:
  """`read(item)` for each item, in order, computed ahead of use by a Grain pipeline:
  `threads` reading threads (at least 1), in `workers` processes (0: in this one). Each
  call reads a whole batch: Grain's cost per element would dominate for single records."""
  import grain  # Only streaming sources pay for it.
  dataset = grain.MapDataset.source(list(items)).map(read).to_iter_dataset(
      grain.ReadOptions(num_threads=max(1, threads), prefetch_buffer_size=2 * max(1, threads)))
  if workers:
    from absl import flags
    if not flags.FLAGS.is_parsed():  # Grain's worker processes read its absl flags.
      raise ConfigError("data.workers", "Grain's worker processes need absl's flags parsed: "
                        "the cnnjax command parses them as it starts; from Python, call "
                        "absl.flags.FLAGS(sys.argv[:1]) first, or set data.workers=0")
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(dataset)


def pad(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  """`batch` zero-padded to `size` examples, with "mask" 0 on the padding."""
  n = len(batch["labels"])
  out = {k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)])
         for k, v in batch.items()}
  out["mask"] = np.arange(size) < n
  return out


def eval_batches(images, labels: np.ndarray, batch_size: int,
                 share: slice = slice(None)) -> Iterator[dict[str, np.ndarray]]:
  """Batches of exactly `batch_size`: the last one is zero-padded, with mask 0 on padding,
  so every example is counted once and no batch shape forces a recompile. Of each, the
  positions `share` (all by default); only their examples are read."""
  n = len(labels)

  def read(start: int) -> dict[str, np.ndarray]:
    examples = np.arange(start, min(start + batch_size, n))
    return _read_share(images, labels, examples, batch_size, share, masked=True)

  return _batches(images, read, range(0, n, batch_size))
