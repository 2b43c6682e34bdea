"""Experiment configs: the base every config file starts from, and its validation.

A config file in `configs/` defines `get_config()` that starts from `base_config()` and
changes only what differs. Every knob of a run lives here; `validate` checks values
before any data is read or anything is compiled, and its errors name the field.
"""
from __future__ import annotations

import ast
import copy
import json
import math
from pathlib import Path
from typing import Any

import ml_collections
from ml_collections import config_dict

from cnnjax.errors import ConfigError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
DATA_SOURCES = ("idx", "tfds", "ucr", "npz", "synthetic", "folder", "array_record")
# How the delivered model is chosen among the evaluated epochs ("auto": val_accuracy with a
# validation split, else last). Never on the test set.
SELECT_RULES = ("auto", "val_accuracy", "train_loss", "last")


def base_config() -> ml_collections.ConfigDict:
  """All fields a run reads, with defaults for MNIST and the talk's CNN."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seeds parameter init, data order, dropout and augmentation.
  c.num_epochs = 5
  c.batch_size = 128  # Global: split evenly over the devices.
  # Caps the batch at this fraction of the training set (0 = no cap): the time-series
  # recipe of Wang et al. (2017), batch min(16, N/10), on sets of 36 to 1000 series.
  c.max_batch_fraction = 0.0
  c.pad_batch = False  # Pad batches that do not split over the devices (padding counts for nothing).
  c.num_devices = 0  # Local devices to use; 0 = all.
  # Simulated CPU devices when JAX runs on the CPU (0 = JAX's default, one). One XLA CPU
  # device keeps about one core busy; 2 on a 2-core machine trains the two halves of
  # each batch side by side, with the same results (BatchNorm, dropout: global batch).
  c.cpu_devices = 0
  # On CPU devices, have glibc's malloc keep freed memory for the next step instead of
  # returning it to the OS (see cnnjax.runtime.keep_freed_memory). Whether it helps
  # depends on the network: benchmarks/allocator.py measures it.
  c.keep_freed_memory = False
  c.parallel = "pmap"  # "pmap" or "shard_map" (inside jit over a device mesh).
  c.distributed = ml_collections.ConfigDict()  # Several processes; see cnnjax/train/distributed.py.
  c.distributed.coordinator_address = ""  # "host:port" of process 0; "" = one process.
  c.distributed.num_processes = 1
  c.distributed.process_id = 0
  c.distributed.auto = False  # Let JAX read the processes from the cluster (SLURM, ...).
  c.label_smoothing = 0.0

  c.data = ml_collections.ConfigDict()
  c.data.source = "idx"  # One of DATA_SOURCES (see cnnjax/data/__init__.py).
  c.data.name = "mnist"  # IDX cache folder / TFDS name / UCR set / .npz file stem.
  c.data.dir = ""  # Where the data lies; "" = $CNNJAX_DATA_DIR, then (IDX) the cache.
  c.data.download = True  # Fetch known IDX files into the cache when found nowhere.
  # Held out of the training data for every choice made during training (evaluation
  # curves, the delivered checkpoint): stratified by class, fixed by config.seed. 0 = none.
  c.data.validation_examples = 0
  c.data.train_examples = 0  # Use the first N of the remaining training examples; 0 = all.
  c.data.num_classes = 10  # 0 = as many as the data has.
  c.data.mean = 0.1307  # Standardisation, after uint8 pixels are scaled to [0, 1].
  c.data.std = 0.3081
  c.data.znorm = False  # Time series: z-normalise each series and channel.
  c.data.unequal_length = "pad"  # Time series of unequal length: "pad" (+ mask channel) or "resample".
  c.data.series_length = 0  # Length to pad or resample to; 0 = the longest series.
  c.data.synthetic = ml_collections.ConfigDict()  # The "synthetic" source: noisy 3-D shapes.
  c.data.synthetic.train = 600
  c.data.synthetic.test = 300
  c.data.synthetic.size = 16  # Volumes of size^3 voxels.
  c.data.synthetic.noise = 0.35  # Gaussian noise, relative to the shapes' intensity.
  c.data.synthetic.seed = 0  # The data set's own seed (config.seed does not change it).
  c.data.augment_shift = 0  # Random translation by up to this many pixels; 0 = off.
  c.data.augment_rotate = 0.0  # 2-D images: random rotation by up to this many degrees.
  c.data.augment_scale = 0.0  # 2-D images: random zoom by a factor in [1 - s, 1 + s].
  # Global; the last batch is padded and masked. Small enough that a CPU keeps a batch's
  # activations in cache (larger batches evaluate slower there; docs/performance.md).
  c.data.eval_batch_size = 256
  c.data.image_size = (0, 0)  # Image folders: (height, width) to resize to; (0, 0) = as stored.
  c.data.channels = 3  # Image folders: 1 (grayscale) or 3 (RGB).
  # Streaming sources (array_record): batches are read ahead of the step by Grain, with
  # this many reading threads, in this many worker processes (0 = in the training process).
  c.data.read_threads = 4
  c.data.workers = 0

  c.model = ml_collections.ConfigDict()
  c.model.name = "cnn"  # Module in cnnjax/models/.
  c.model.conv_features = (8, 16)  # One conv block per entry: conv, [BN], ReLU, pool.
  # Sizes are one number for every spatial axis or a tuple per axis (1-D, 2-D, 3-D).
  c.model.kernel_size = config_dict.FieldReference(3, field_type=object)
  c.model.kernel_sizes = ()  # One kernel size per conv block; () = kernel_size for all.
  c.model.padding = config_dict.FieldReference("SAME", field_type=object)  # Or "VALID", n.
  c.model.pool_size = config_dict.FieldReference(2, field_type=object)  # Max pool window = stride; 1 = none.
  c.model.head = "flatten"  # "flatten" or "global_avg" (global average pooling).
  c.model.dense_features = ()  # Hidden dense layers before the classifier.
  c.model.batch_norm = False
  # Pool right after each conv (conv, pool, [BN], ReLU): BN and ReLU then touch a quarter
  # of the values (2x2 pools), as in fast small-image recipes. A different network, not a
  # reordering: BN's statistics are taken after pooling.
  c.model.pool_first = False
  c.model.batch_norm_momentum = 0.9  # Decay of BatchNorm's running statistics.
  c.model.dropout_rate = 0.0  # Before each dense layer.
  c.model.dtype = "float32"  # Compute dtype: "bfloat16" on GPUs/TPUs (parameters stay float32).
  # Where conv blocks put the batch axis: "auto" (batch_last for small blocks on a CPU,
  # much faster there), "batch_first" or "batch_last"; see cnnjax/models/cnn.py.
  c.model.layout = "auto"

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"  # One of OPTIMIZERS.
  c.optimizer.learning_rate = 0.05  # Peak learning rate of the schedule.
  c.optimizer.momentum = 0.9  # SGD momentum; 0 = plain SGD.
  c.optimizer.nesterov = False
  c.optimizer.b1 = 0.9  # Adam/AdamW moment decay rates.
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 0.0  # Decoupled for AdamW, L2 added to gradients otherwise.
  c.optimizer.grad_clip_norm = 0.0  # Clip gradients to this global norm; 0 = off.
  c.optimizer.schedule = "constant"  # One of SCHEDULES.
  c.optimizer.warmup_epochs = 0.0  # Linear warmup (constant, cosine); fraction for onecycle.

  c.eval_every_epochs = 1  # Evaluate and write a metrics line every N epochs (and the last).
  # Also evaluate the test set at each evaluation (test_* in metrics.jsonl), for plots of
  # test curves. Nothing reads them to decide anything; the test accuracy of the
  # delivered model is measured once, when the run ends.
  c.test_curves = False

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_epochs = 1
  c.checkpoint.keep = 3  # Latest checkpoints kept; the selected one is kept apart.
  c.checkpoint.select = "auto"  # The delivered model, one of SELECT_RULES.

  c.log_every_seconds = 10.0  # Progress lines while training; 0 = epoch lines only.
  return c


def select_rule(config: ml_collections.ConfigDict) -> str:
  """config.checkpoint.select with "auto" resolved."""
  rule = config.checkpoint.select
  if rule == "auto":
    return "val_accuracy" if config.data.validation_examples else "last"
  return rule


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Plain JSON-able dict of a config (tuples become lists)."""
  return json.loads(config.to_json())


def from_dict(values: dict[str, Any]) -> ml_collections.ConfigDict:
  """Rebuilds a config saved with `to_dict` on top of the base config's types."""
  config = base_config()
  _update(config, values, prefix="")
  return config


def _update(config, values, prefix):
  for key, value in values.items():
    field = prefix + key
    if key not in config:
      raise ConfigError(field, "unknown field")
    if isinstance(config[key], ml_collections.ConfigDict):
      _update(config[key], value, field + ".")
    else:
      config[key] = tuple(value) if isinstance(value, list) else value


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}: the names overrides and tables use."""
  out = {}
  for key, value in values.items():
    if isinstance(value, dict):
      out.update(flatten(value, prefix + key + "."))
    else:
      out[prefix + key] = value
  return out


def _check(ok: bool, field: str, message: str):
  if not ok:
    raise ConfigError(field, message)


def _choice(config, field: str, allowed):
  value = config
  for part in field.split("."):
    value = value[part]
  _check(value in allowed, field, f"{value!r} is not one of {', '.join(map(repr, allowed))}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field whose value cannot work.

  Checks that need the data or the devices (image size against pooling, batch size
  against device count) happen where those are known, still before any compile.
  """
  _check(isinstance(config.seed, int), "seed", "must be an integer")
  _check(config.num_epochs >= 1, "num_epochs", f"must be >= 1, got {config.num_epochs}")
  _check(config.batch_size >= 1, "batch_size", f"must be >= 1, got {config.batch_size}")
  _check(0.0 <= config.max_batch_fraction <= 1.0, "max_batch_fraction",
         f"must be in [0, 1], got {config.max_batch_fraction}")
  _check(config.cpu_devices >= 0, "cpu_devices", f"must be >= 0, got {config.cpu_devices}")
  _check(config.num_devices >= 0, "num_devices", f"must be >= 0 (0 = all), got {config.num_devices}")
  _choice(config, "parallel", ("pmap", "shard_map"))
  _check(0.0 <= config.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")

  d = config.data
  _choice(config, "data.source", DATA_SOURCES)
  _check(bool(d.name), "data.name", "must name a data set, e.g. 'mnist'")
  _check(d.train_examples >= 0, "data.train_examples", "must be >= 0 (0 = all)")
  _check(d.validation_examples >= 0, "data.validation_examples", "must be >= 0 (0 = none)")
  _check(d.num_classes == 0 or d.num_classes >= 2, "data.num_classes", "must be >= 2 (0 = from the data)")
  _choice(config, "data.unequal_length", ("pad", "resample"))
  _check(d.series_length >= 0, "data.series_length", "must be >= 0 (0 = the longest)")
  _check(d.std > 0 and math.isfinite(d.std), "data.std", "must be a positive number")
  _check(d.augment_shift >= 0, "data.augment_shift", "must be >= 0 (0 = off)")
  _check(0 <= d.augment_rotate <= 180, "data.augment_rotate", "must be in [0, 180] degrees")
  _check(0 <= d.augment_scale < 1, "data.augment_scale", "must be in [0, 1)")
  _check(d.eval_batch_size >= 1, "data.eval_batch_size", "must be >= 1")
  _check(d.read_threads >= 1, "data.read_threads", "must be >= 1")
  _check(d.channels in (1, 3), "data.channels", "must be 1 (grayscale) or 3 (RGB)")
  _check(len(d.image_size) == 2 and all(s >= 0 for s in d.image_size) and
         (all(d.image_size) or not any(d.image_size)), "data.image_size",
         "must be (height, width), or (0, 0) to keep the stored size")
  _check(d.workers >= 0, "data.workers", "must be >= 0 (0 = read in the training process)")
  if d.train_examples:
    _check(d.train_examples >= config.batch_size, "data.train_examples",
           f"{d.train_examples} examples make no batch of config.batch_size={config.batch_size}")

  o = config.optimizer
  _choice(config, "optimizer.name", OPTIMIZERS)
  _choice(config, "optimizer.schedule", SCHEDULES)
  _check(o.learning_rate > 0 and math.isfinite(o.learning_rate), "optimizer.learning_rate",
         f"must be a positive number, got {o.learning_rate}")
  _check(0.0 <= o.momentum < 1.0, "optimizer.momentum", "must be in [0, 1)")
  _check(0.0 <= o.b1 < 1.0, "optimizer.b1", "must be in [0, 1)")
  _check(0.0 <= o.b2 < 1.0, "optimizer.b2", "must be in [0, 1)")
  _check(o.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0")
  _check(o.grad_clip_norm >= 0, "optimizer.grad_clip_norm", "must be >= 0 (0 = off)")
  _check(o.warmup_epochs >= 0, "optimizer.warmup_epochs", "must be >= 0")
  if o.schedule == "onecycle":
    _check(0 < o.warmup_epochs < 1, "optimizer.warmup_epochs",
           "for schedule 'onecycle' it is the warmup fraction of training, in (0, 1)")
  else:
    _check(o.warmup_epochs < config.num_epochs, "optimizer.warmup_epochs",
           f"must be shorter than config.num_epochs={config.num_epochs}")

  _check(config.eval_every_epochs >= 1, "eval_every_epochs", "must be >= 1")
  _check(config.checkpoint.every_epochs >= 1, "checkpoint.every_epochs", "must be >= 1")
  _check(config.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1")
  _choice(config, "checkpoint.select", SELECT_RULES)
  if config.checkpoint.select == "val_accuracy":
    _check(d.validation_examples > 0, "checkpoint.select",
           "'val_accuracy' needs a validation split: set config.data.validation_examples")
  _check(config.log_every_seconds >= 0, "log_every_seconds", "must be >= 0")

  from cnnjax import models  # The model registry validates its own fields.
  models.validate_config(config.model)


def load_module(path: str | Path, name: str):
  """Executes the Python file `path` as a module (config and experiment files)."""
  import importlib.util
  path = Path(path)
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or path.suffix != ".py":
    raise ConfigError("<file>", f"{str(path)!r} is not a Python file")
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except FileNotFoundError as e:
    raise ConfigError("<file>", f"no file {str(path)!r}") from e
  return module


def load(spec: str, overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
  """Loads `path/to/config.py[:arg]` (calling `get_config(arg)`), then applies
  {'a.b': value} overrides; the config is locked, so a misspelt field is an error."""
  path, _, arg = spec.partition(":")
  module = load_module(path, "_cnnjax_config")
  config = module.get_config(arg) if arg else module.get_config()
  config.lock()
  apply_overrides(config, overrides)
  return config


def command_line_overrides(args: list[str]) -> dict[str, str]:
  """{'a.b': 'text'} from `--config.a.b=text` (or `--config.a.b text`) arguments, the one
  override syntax of every command; the text is typed by `override`. Raises ValueError
  naming an argument that is not such an override."""
  overrides, args = {}, list(args)
  while args:
    arg = args.pop(0)
    name, sep, text = arg.partition("=")
    if not name.startswith("--config.") or len(name) == len("--config."):
      raise ValueError(f"unrecognized argument {arg!r} (overrides are --config.FIELD=VALUE)")
    if not sep:
      if not args:
        raise ValueError(f"{arg} needs a value: {arg}=VALUE")
      text = args.pop(0)
    overrides[name[len("--config."):]] = text
  return overrides


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any] | None) -> None:
  """Sets each {'a.b': value} in place (see `override`)."""
  for field, value in (overrides or {}).items():
    override(config, field, value)


def with_overrides(config: ml_collections.ConfigDict,
                   overrides: dict[str, Any] | None) -> ml_collections.ConfigDict:
  """A locked copy of `config` with {'a.b': value} overrides; `config` is left as it is."""
  copied = copy.deepcopy(config)  # Keeps object-typed fields (kernel_size) flexible.
  copied.lock()
  apply_overrides(copied, overrides)
  return copied


def override(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
  """Sets dotted `field` (e.g. 'optimizer.learning_rate'), with ConfigDict's type checks.
  Text for a field that does not hold text is read as a Python literal ('(9, 16)', '0.1',
  'True'), as on a command line; an unknown field names the closest known one."""
  *parents, leaf = field.split(".")
  node = config
  for i, part in enumerate(parents):
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise ConfigError(".".join(parents[:i + 1]), _unknown(part, node))
    node = node[part]
  if leaf not in node:
    raise ConfigError(field, _unknown(leaf, node))
  if isinstance(value, str):
    value = _from_text(value, node.get_type(leaf))
  try:
    node[leaf] = tuple(value) if isinstance(value, list) else value
  except TypeError as e:
    expected = node.get_type(leaf)
    raise ConfigError(field, f"takes {getattr(expected, '__name__', expected)} values, got "
                      f"{value!r}") from e


def _unknown(name: str, node) -> str:
  import difflib
  keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
  close = difflib.get_close_matches(name, keys, n=1)
  return "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")


def _from_text(text: str, field_type) -> Any:
  if field_type is str:
    return text
  if field_type is bool and text.lower() in ("true", "false"):
    return text.lower() == "true"
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # A word ("SAME") for a field of several types; else a type error.
