"""Experiment configs: the base every config file starts from, overrides, validation.

A config file in `configs/` defines `get_config()` that starts from `base_config()` and
changes only what differs; another model or data source is a section of its own
(`config.model = cnnjax.models.config("resnet", ...)`, `config.data =
cnnjax.data.config("ucr", ...)`), since each owns its fields. Every knob of a run lives
in the config; `validate` checks values before any data is read or anything is compiled,
and its errors name the field.
"""
from __future__ import annotations

import ast
import copy
import json
import math
from pathlib import Path
from typing import Any

import ml_collections

from cnnjax.errors import ConfigError, UsageError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
# How the delivered model is chosen among the evaluated epochs ("auto": val_accuracy with a
# validation split, else last). Never on the test set.
SELECT_RULES = ("auto", "val_accuracy", "ema_val_accuracy", "train_loss", "last")
CHECKPOINTS = ("selected", "latest")  # config.init.checkpoint, or a step number as text.
# Fields that choose what the rest of their section holds: setting one (in a config file
# through these functions, or as an override) replaces that section's own fields.
SELECTORS = {"model.name": "model", "data.source": "data"}


def base_config() -> ml_collections.ConfigDict:
  """Every field a run reads, with defaults for MNIST and the talk's CNN. The fields of
  config.model and config.data come from the model's and the data source's classes
  (`cnnjax.models.config`, `cnnjax.data.config`)."""
  from cnnjax import data, models
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
  # device keeps about one core busy; 2 on a 2-core machine trains the two halves of each
  # batch side by side, with the same results (BatchNorm, dropout: global batch).
  c.cpu_devices = 0
  # On CPU devices, glibc's malloc keeps freed memory for the next step instead of
  # returning it to the OS (cnnjax.runtime.keep_freed_memory).
  c.keep_freed_memory = False
  c.parallel = "pmap"  # "pmap" or "shard_map" (inside jit over a device mesh).
  c.distributed = ml_collections.ConfigDict()  # Several processes; see cnnjax/train/distributed.py.
  c.distributed.coordinator_address = ""  # "host:port" of process 0; "" = one process.
  c.distributed.num_processes = 1
  c.distributed.process_id = 0
  c.distributed.auto = False  # Let JAX read the processes from the cluster (SLURM, ...).
  c.label_smoothing = 0.0
  # Micro-batches per update: each device's share of the batch is split into this many
  # parts whose gradients are added before one optimizer step (a batch too big for the
  # memory, the same update). Models with BatchNorm cannot (refused before training).
  c.accumulate_steps = 1
  # Start from a trained run: its parameters and BatchNorm statistics replace the fresh
  # ones, except those matching a pattern of `skip` (fnmatch on paths like
  # 'Dense_0/kernel'; 'Dense_0' matches all of that layer). "" = from scratch.
  c.init = ml_collections.ConfigDict()
  c.init.from_run = ""  # A run directory.
  c.init.checkpoint = "selected"  # "selected" (its delivered model), "latest" or a step.
  c.init.skip = ()  # E.g. ("Dense_1",): the classifier, when the classes change.
  # A jax.profiler trace of `num_steps` steps after the first `start_step` (compilation
  # done), in RUN/profile/ for TensorBoard's profile plugin; 0 steps = off.
  c.profile = ml_collections.ConfigDict()
  c.profile.start_step = 5
  c.profile.num_steps = 0
  c.data = data.config("idx")
  c.model = models.config("cnn")
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
  # Parameter-path patterns (as config.init.skip) that never change: optax's
  # multi_transform gives them no update, weight decay included.
  c.optimizer.frozen = ()
  # Decay of an exponential moving average of the weights (and BatchNorm statistics),
  # kept on the devices and in checkpoints; evaluated as ema_val_* (and delivered with
  # checkpoint.select="ema_val_accuracy"). 0 = off; 0.999 is usual.
  c.optimizer.ema_decay = 0.0
  c.eval_every_epochs = 1  # Evaluate and write a metrics line every N epochs (and the last).
  # Also evaluate the test set at each evaluation (test_* in metrics.jsonl), for plots of
  # test curves. Nothing reads them to decide anything.
  c.test_curves = False
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_epochs = 1
  c.checkpoint.keep = 3  # Latest checkpoints kept; the selected one is kept apart.
  c.checkpoint.select = "auto"  # The delivered model, one of SELECT_RULES.
  # Stop when the selection metric (checkpoint.select) has not improved by at least
  # min_delta for `patience` epochs; the selected checkpoint is delivered as usual. 0 = off.
  c.early_stopping = ml_collections.ConfigDict()
  c.early_stopping.patience = 0
  c.early_stopping.min_delta = 0.0
  # Train up to this epoch, checkpoint and stop as "paused" (0 = off): the schedule stays
  # over num_epochs, so raising or clearing it resumes the run as if it never paused.
  # `cnnjax sweep`'s successive halving sets it for each rung.
  c.pause_at_epoch = 0
  c.log_every_seconds = 10.0  # Progress lines while training; 0 = epoch lines only.
  # A folder where the run also logs through DVCLive (its parameters, per-epoch metrics
  # and final figures, for `dvc exp show` and `dvc plots`); "" = off. Needs the `dvc` extra.
  c.dvclive = ""
  return c


def select_rule(config: ml_collections.ConfigDict) -> str:
  """config.checkpoint.select with "auto" resolved."""
  rule = config.checkpoint.select
  if rule == "auto":
    return "val_accuracy" if config.data.validation_examples else "last"
  return rule


def delivers_ema(config: ml_collections.ConfigDict) -> bool:
  """Whether the run's delivered model is its moving average of the weights."""
  return select_rule(config) == "ema_val_accuracy"


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Plain JSON-able dict of a config (tuples become lists)."""
  return json.loads(config.to_json())


def from_dict(values: dict[str, Any]) -> ml_collections.ConfigDict:
  """Rebuilds a config saved with `to_dict` on the types of the base config and of its
  model and data source; fields it lacks (added to cnnjax since) keep their defaults."""
  config = base_config()
  flat = flatten(values)
  for selector in SELECTORS:
    if selector in flat:
      select(config, selector, flat.pop(selector))
  for field, value in flat.items():
    override(config, field, tuple(value) if isinstance(value, list) else value, parse=False)
  return config


def select(config: ml_collections.ConfigDict, selector: str, value: str) -> None:
  """Sets config.model.name or config.data.source: the section gets the fields of that
  model or source, at their defaults (a data section keeps its shared fields)."""
  from cnnjax import data, models
  section = SELECTORS[selector]
  if value == config[section][selector.split(".")[1]]:
    return
  if section == "model":
    new = models.config(value, dtype=config.model.dtype)
  else:
    new = data.with_source(config.data, value)
  if config.is_locked:
    new.lock()
  config[section] = new


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


def _choice(value, field: str, allowed):
  _check(value in allowed, field, f"{value!r} is not one of {', '.join(map(repr, allowed))}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first field whose value cannot work.

  Checks that need the data or the devices (image size against pooling, batch size
  against device count) happen where those are known, still before any compile.
  """
  from cnnjax import data, models
  _check(isinstance(config.seed, int), "seed", "must be an integer")
  _check(config.num_epochs >= 1, "num_epochs", f"must be >= 1, got {config.num_epochs}")
  _check(config.batch_size >= 1, "batch_size", f"must be >= 1, got {config.batch_size}")
  _check(0.0 <= config.max_batch_fraction <= 1.0, "max_batch_fraction",
         f"must be in [0, 1], got {config.max_batch_fraction}")
  _check(config.cpu_devices >= 0, "cpu_devices", f"must be >= 0, got {config.cpu_devices}")
  _check(config.num_devices >= 0, "num_devices", f"must be >= 0 (0 = all), got {config.num_devices}")
  _choice(config.parallel, "parallel", ("pmap", "shard_map"))
  _check(0.0 <= config.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")
  _check(config.accumulate_steps >= 1, "accumulate_steps", "must be >= 1 (1 = off)")
  _validate_init(config.init)
  _check(config.profile.start_step >= 0, "profile.start_step", "must be >= 0")
  _check(config.profile.num_steps >= 0, "profile.num_steps", "must be >= 0 (0 = off)")
  _validate_data(config.data, config.batch_size)
  data.source(config.data)  # The source's own fields.
  _validate_optimizer(config.optimizer, config.num_epochs)
  _check(config.eval_every_epochs >= 1, "eval_every_epochs", "must be >= 1")
  _check(config.checkpoint.every_epochs >= 1, "checkpoint.every_epochs", "must be >= 1")
  _check(config.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1")
  _choice(config.checkpoint.select, "checkpoint.select", SELECT_RULES)
  if config.checkpoint.select in ("val_accuracy", "ema_val_accuracy"):
    _check(config.data.validation_examples > 0, "checkpoint.select",
           f"{config.checkpoint.select!r} needs a validation split: set "
           f"config.data.validation_examples")
  if config.checkpoint.select == "ema_val_accuracy":
    _check(config.optimizer.ema_decay > 0, "checkpoint.select",
           "'ema_val_accuracy' needs the moving average: set config.optimizer.ema_decay")
  _check(config.log_every_seconds >= 0, "log_every_seconds", "must be >= 0")
  _check(0 <= config.pause_at_epoch <= config.num_epochs, "pause_at_epoch",
         f"must be in [0, num_epochs={config.num_epochs}] (0 = off), got {config.pause_at_epoch}")
  _check(config.pause_at_epoch % config.eval_every_epochs == 0, "pause_at_epoch",
         f"pauses after an evaluation: use a multiple of config.eval_every_epochs="
         f"{config.eval_every_epochs}")
  e = config.early_stopping
  _check(e.patience >= 0, "early_stopping.patience", "must be >= 0 (0 = off)")
  _check(e.min_delta >= 0, "early_stopping.min_delta", "must be >= 0")
  if e.patience:
    _check(select_rule(config) != "last", "early_stopping.patience",
           "stops on the selection metric, and checkpoint.select is 'last': set it to "
           "'val_accuracy' (with a validation split) or 'train_loss'")
    _check(e.patience % config.eval_every_epochs == 0, "early_stopping.patience",
           f"counts epochs between evaluations: use a multiple of config.eval_every_epochs="
           f"{config.eval_every_epochs}")
  if config.dvclive:
    import importlib.util
    _check(importlib.util.find_spec("dvclive") is not None, "dvclive",
           "logging through DVCLive needs it installed: pip install -e '.[dvc]'")
  models.check_fields(config.model)


def _validate_data(d, batch_size: int) -> None:
  """The shared fields of config.data."""
  _check(d.train_examples >= 0, "data.train_examples", "must be >= 0 (0 = all)")
  _check(d.validation_examples >= 0, "data.validation_examples", "must be >= 0 (0 = none)")
  _check(d.num_classes == 0 or d.num_classes >= 2, "data.num_classes", "must be >= 2 (0 = from the data)")
  _check(d.std > 0 and math.isfinite(d.std), "data.std", "must be a positive number")
  _check(d.augment_shift >= 0, "data.augment_shift", "must be >= 0 (0 = off)")
  _check(0 <= d.augment_rotate <= 180, "data.augment_rotate", "must be in [0, 180] degrees")
  _check(0 <= d.augment_scale < 1, "data.augment_scale", "must be in [0, 1)")
  _check(d.eval_batch_size >= 1, "data.eval_batch_size", "must be >= 1")
  _choice(d.project_axis, "data.project_axis", (-1, 0, 1, 2))
  _choice(d.projection, "data.projection", ("max", "mean"))
  _check(len(set(d.classes)) == len(d.classes) and len(d.classes) != 1, "data.classes",
         f"needs two or more different labels (empty = all), got {tuple(d.classes)}")
  for field in ("mixup_alpha", "cutmix_alpha"):
    value = d[field]
    _check(value >= 0 and math.isfinite(value), "data." + field,
           f"must be >= 0 (0 = off), got {value}")
  if d.train_examples:
    _check(d.train_examples >= batch_size, "data.train_examples",
           f"{d.train_examples} examples make no batch of config.batch_size={batch_size}")


def _validate_optimizer(o, num_epochs: int) -> None:
  _choice(o.name, "optimizer.name", OPTIMIZERS)
  _choice(o.schedule, "optimizer.schedule", SCHEDULES)
  _check(o.learning_rate > 0 and math.isfinite(o.learning_rate), "optimizer.learning_rate",
         f"must be a positive number, got {o.learning_rate}")
  _check(0.0 <= o.momentum < 1.0, "optimizer.momentum", "must be in [0, 1)")
  _check(0.0 <= o.b1 < 1.0, "optimizer.b1", "must be in [0, 1)")
  _check(0.0 <= o.b2 < 1.0, "optimizer.b2", "must be in [0, 1)")
  _check(o.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0")
  _check(o.grad_clip_norm >= 0, "optimizer.grad_clip_norm", "must be >= 0 (0 = off)")
  _check(o.warmup_epochs >= 0, "optimizer.warmup_epochs", "must be >= 0")
  _check(0.0 <= o.ema_decay < 1.0, "optimizer.ema_decay", f"must be in [0, 1) (0 = off), "
         f"got {o.ema_decay}")
  _check(all(isinstance(p, str) and p for p in o.frozen), "optimizer.frozen",
         f"takes parameter-path patterns (text), got {tuple(o.frozen)}")
  if o.schedule == "onecycle":
    _check(0 < o.warmup_epochs < 1, "optimizer.warmup_epochs",
           "for schedule 'onecycle' it is the warmup fraction of training, in (0, 1)")
  else:
    _check(o.warmup_epochs < num_epochs, "optimizer.warmup_epochs",
           f"must be shorter than config.num_epochs={num_epochs}")


def _validate_init(i) -> None:
  """config.init's values; the run it names is read (and its parameters matched to the
  model) where the model is built, still before anything compiles."""
  _check(i.checkpoint in CHECKPOINTS or i.checkpoint.isdigit(), "init.checkpoint",
         f"{i.checkpoint!r} is neither 'selected', 'latest' nor a step number")
  _check(all(isinstance(p, str) and p for p in i.skip), "init.skip",
         f"takes parameter-path patterns (text), got {tuple(i.skip)}")
  _check(bool(i.from_run) or not i.skip, "init.skip", "skips parameters of config.init."
         "from_run, which is not set")


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
  override syntax of every command; the text is typed by `override`. Raises
  UsageError naming an argument that is not such an override."""
  overrides, args = {}, list(args)
  while args:
    arg = args.pop(0)
    name, sep, text = arg.partition("=")
    if not name.startswith("--config.") or len(name) == len("--config."):
      raise UsageError(f"unrecognized argument {arg!r} (overrides are --config.FIELD=VALUE)")
    if not sep:
      if not args:
        raise UsageError(f"{arg} needs a value: {arg}=VALUE")
      text = args.pop(0)
    overrides[name[len("--config."):]] = text
  return overrides


def params_file_overrides(path: str | Path) -> dict[str, Any]:
  """{'a.b': value} from a YAML file of config fields (nested keys, or dotted ones, as in
  DVC's params.yaml), typed by YAML; lists become tuples. Raises UsageError naming the file
  when it is missing, is not YAML or does not hold a mapping of field names."""
  import yaml
  try:
    values = yaml.safe_load(Path(path).read_text())
  except OSError as e:
    raise UsageError(f"{path}: cannot read the params file: {e.strerror or e}") from e
  except yaml.YAMLError as e:
    where = getattr(e, "problem_mark", None)
    line = f" (line {where.line + 1})" if where else ""
    raise UsageError(f"{path}: not a YAML file{line}: {getattr(e, 'problem', None) or e}") from e
  if values is None:
    return {}
  if not isinstance(values, dict):
    raise UsageError(f"{path}: holds a YAML {type(values).__name__}, not a mapping of config "
                     f"fields (e.g. 'optimizer: {{learning_rate: 0.1}}')")
  _check_keys(values, path)
  return {k: _tuples(v) for k, v in flatten(values).items()}


def _check_keys(values: dict, path) -> None:
  for key, value in values.items():
    if not isinstance(key, str):
      raise UsageError(f"{path}: key {key!r} is not a config field name")
    if isinstance(value, dict):
      _check_keys(value, path)


def _tuples(value):
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any] | None) -> None:
  """Sets each {'a.b': value} in place (see `override`): config.model.name and
  config.data.source first, since they choose the fields of their sections."""
  overrides = overrides or {}
  for field in sorted(overrides, key=lambda f: f not in SELECTORS):
    try:
      override(config, field, overrides[field])
    except ConfigError as e:
      e.override = field  # The override that failed: the command line names where it came from.
      raise


def with_overrides(config: ml_collections.ConfigDict,
                   overrides: dict[str, Any] | None) -> ml_collections.ConfigDict:
  """A locked copy of `config` with {'a.b': value} overrides; `config` is left as it is."""
  copied = copy.deepcopy(config)  # Keeps object-typed fields (kernel_size) flexible.
  copied.lock()
  apply_overrides(copied, overrides)
  return copied


def override(config: ml_collections.ConfigDict, field: str, value: Any, parse: bool = True) -> None:
  """Sets dotted `field` (e.g. 'optimizer.learning_rate'), with ConfigDict's type checks.
  With `parse`, text for a field that does not hold text is read as a Python literal
  ('(9, 16)', '0.1', 'True'), as on a command line. An unknown field names the closest
  known one (and, in config.model or config.data, the fields its model or source has)."""
  if field in SELECTORS:
    select(config, field, value)
    return
  *parents, leaf = field.split(".")
  node = config
  for i, part in enumerate(parents):
    if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
      raise ConfigError(".".join(parents[:i + 1]), _unknown(part, node))
    node = node[part]
  if leaf not in node:
    raise ConfigError(field, _unknown(leaf, node) + _section_fields(config, parents))
  if parse and isinstance(value, str):
    value = _from_text(value, node.get_type(leaf))
  try:
    node[leaf] = tuple(value) if isinstance(value, list) else value
  except TypeError as e:
    expected = node.get_type(leaf)
    raise ConfigError(field, f"takes {getattr(expected, '__name__', expected)} values, got "
                      f"{value!r}") from e


def _section_fields(config, parents: list[str]) -> str:
  """What config.model or config.data holds, for the error of a field it lacks."""
  from cnnjax import data, models
  if parents == ["model"]:
    return f": model {config.model.name!r} has {', '.join(k for k in config.model if k not in models.SHARED)}"
  if parents == ["data"]:
    own = [k for k in config.data if k not in data.SHARED]
    return f": data source {config.data.source!r} has {', '.join(own) or 'no fields'} beside the shared ones"
  return ""


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
