"""Models by `config.model.name`: a module of this package (`cnn`, `mlp`, `resnet`,
`nnx_cnn`), whose Flax module is its `Model`, or any importable `package.module:Class`.

A model is a Flax module class, Linen (`nn.Module`) or NNX (`nnx.Module`, run through
`bridge`). Its constructor's keyword arguments with defaults (a Linen module's dataclass
fields) are its config fields: `config.model` holds `name`, the shared `dtype`, and exactly
those fields. cnnjax passes the others (an NNX module's `rngs` too):

  num_classes   the number of classes of the data (required)
  dtype         config.model.dtype as a JAX dtype, the compute dtype (where declared;
                a model without the field computes as it likes, in float32 only)
  axis_name     the device axis (where declared): what layers.BatchNorm and
                layers.Dropout need to follow the global batch on any number of devices
  input_shape   one example's shape, channels last (where declared)

A Linen model is called as `model(x, train=...)`, and with `mask=` (the real examples of
a batch padded by config.pad_batch) where its `__call__` takes one; an NNX model as
`model(x)` after `model.train()` or `model.eval()`. Either returns (batch, classes) logits.
A model checks its fields when it is constructed (raising ConfigError or ValueError) and
its input shape in an optional `check_input(self, input_shape)`; both run before anything
compiles (an NNX model's when it is built for the data's input shape).
"""
from __future__ import annotations

import inspect
from typing import Sequence

import ml_collections

from cnnjax import fields
from cnnjax.errors import ConfigError

PROVIDED = ("num_classes", "dtype", "axis_name", "input_shape", "parent", "name",  # Not fields.
            "rngs")
SHARED = ("name", "dtype")  # In every config.model.
DTYPES = ("float32", "bfloat16")
NOT_CLASSES = ("layers", "batch_last", "bridge")  # Modules here that are not models.


def model_class(name: str):
  """The Flax module class `name` (config.model.name) stands for: Linen or NNX."""
  from flax import linen as nn

  from cnnjax.models import bridge
  cls = fields.find_class(__name__, name, "Model", "model.name")
  if bridge.is_nnx(cls):
    if "rngs" not in (p.name for p in fields.parameters(cls)):
      raise ConfigError("model.name", f"{name}: an NNX module's constructor takes `rngs` "
                        f"(the nnx.Rngs its layers draw their parameters from); "
                        f"{cls.__qualname__}.__init__ takes none")
  elif not issubclass(cls, nn.Module):
    raise ConfigError("model.name", f"{name} is neither a Linen module (flax.linen.Module) "
                      f"nor an NNX module (flax.nnx.Module)")
  return cls


def config(name: str, **values) -> ml_collections.ConfigDict:
  """`config.model` for the model `name`: its fields with their defaults, then `values`."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.dtype = "float32"  # The compute dtype ("bfloat16" on GPUs/TPUs); parameters stay float32.
  fields.add_fields(c, model_class(name), PROVIDED, "model.name")
  fields.set_values(c, values, "model", "model", name, SHARED)
  return c


def check_fields(model_config) -> None:
  """ConfigError naming the first field of `model_config` its model lacks, or whose value
  the model refuses; nothing is built or compiled."""
  own = fields.defaults(model_class(model_config.name), PROVIDED, "model.name")
  fields.check_own(model_config, own, SHARED, "model", "model", model_config.name)
  if model_config.dtype == "float16":
    raise ConfigError("model.dtype", "'float16' is not supported: its 5 exponent bits "
                      "underflow gradients without loss scaling; use 'bfloat16' (float32's "
                      "range, on GPUs and TPUs alike)")
  if model_config.dtype not in DTYPES:
    raise ConfigError("model.dtype", f"{model_config.dtype!r} is not one of {', '.join(map(repr, DTYPES))}")
  _construct(model_config, num_classes=2, input_shape=None, axis_name=None)


def _construct(model_config, num_classes: int, input_shape, axis_name):
  """The model, or with `input_shape` None, the checks of its fields that need no data
  (an NNX module is built, abstractly, only for an input shape)."""
  import jax.numpy as jnp
  from flax.core import FrozenDict

  from cnnjax.models import bridge
  cls = model_class(model_config.name)
  accepts = {p.name for p in fields.parameters(cls)}
  kwargs = {k: model_config[k] for k in fields.defaults(cls, PROVIDED, "model.name")}
  kwargs["num_classes"] = num_classes
  if "dtype" in accepts:
    kwargs["dtype"] = jnp.dtype(model_config.dtype)
  elif model_config.dtype != "float32":
    raise ConfigError("model.dtype", f"model {model_config.name!r} takes no dtype: it computes "
                      f"in float32")
  if "axis_name" in accepts:
    kwargs["axis_name"] = axis_name
  if "input_shape" in accepts and input_shape is not None:
    kwargs["input_shape"] = tuple(input_shape)
  nnx_model = bridge.is_nnx(cls)
  if nnx_model and input_shape is None:
    return None
  try:
    module = bridge.abstract(cls, kwargs) if nnx_model else cls(**kwargs)
  except (ValueError, TypeError) as e:
    raise ConfigError("model", f"{model_config.name}: {e}") from e
  if input_shape is not None and hasattr(module, "check_input"):
    module.check_input(tuple(input_shape))
  if nnx_model:
    return bridge.Bridged(cls, kwargs=FrozenDict(kwargs), axis_name=axis_name)
  return module


def build(model_config, num_classes: int, input_shape: Sequence[int],
          axis_name: str | None = None):
  """The Flax module for `model_config` (checked with `check_fields`), after checking it
  can take `input_shape` (one example, channels last), so that a bad config fails before
  anything compiles. On a CPU, config.model.layout may put its blocks batch-last
  (`batch_last.for_layout`)."""
  import jax
  import jax.numpy as jnp

  from cnnjax.models import batch_last
  model = _construct(model_config, num_classes, tuple(input_shape), axis_name)
  x = jnp.zeros((2, *input_shape), jnp.float32)
  logits, _ = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, train=False))
  if logits.shape != (2, num_classes):
    raise ConfigError("model.name", f"{model_config.name} returns an array of shape "
                      f"{logits.shape} for 2 examples of shape {tuple(input_shape)}: a model "
                      f"returns (batch, classes) logits, here (2, {num_classes})")
  return batch_last.for_layout(model, tuple(input_shape))


def takes_mask(model) -> bool:
  """Whether the model's `__call__` takes the `mask` of a padded batch."""
  return "mask" in inspect.signature(type(model).__call__).parameters


def summary(model, input_shape: Sequence[int]) -> str:
  """Table of layers, output shapes and parameter counts (traced, not compiled); shapes
  batch first whatever layout the model computes in (the parameters are the same)."""
  import jax
  import jax.numpy as jnp
  from flax import linen as nn

  from cnnjax.models import batch_last, bridge
  if isinstance(model, bridge.Bridged):
    return bridge.summary(model, input_shape)
  x = jnp.zeros((1, *input_shape), jnp.float32)
  return nn.tabulate(batch_last.batch_first(model), jax.random.key(0), depth=1,
                     mutable=("params", "batch_stats"),
                     console_kwargs={"width": 120, "color_system": None, "force_terminal": False})(x)


def param_count(params) -> int:
  import jax
  return sum(int(p.size) for p in jax.tree.leaves(params))
