"""Model registry: `config.model.name` names a module here.

Each model module defines `build(model_config, num_classes, axis_name)`,
`validate_config(model_config)` and `check_input(model_config, input_shape)`;
adding a model is adding such a file.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from cnnjax.errors import ConfigError

_NOT_MODELS = {"layers"}


def available() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules(__path__)
                if not m.name.startswith("_") and m.name not in _NOT_MODELS)


def _module(name: str):
  if name not in available():
    raise ConfigError("model.name", f"{name!r} is not one of {', '.join(map(repr, available()))}")
  return importlib.import_module(f"{__name__}.{name}")


def validate_config(model_config) -> None:
  if model_config.dtype not in ("float32", "bfloat16", "float16"):
    raise ConfigError("model.dtype", f"{model_config.dtype!r} is not one of 'float32', "
                      f"'bfloat16', 'float16'")
  _module(model_config.name).validate_config(model_config)


def build(model_config, num_classes: int, input_shape: Sequence[int],
          axis_name: str | None = None) -> nn.Module:
  """The Flax module for a validated `model_config` (`config.validate`), after checking
  it can take `input_shape` (one example, channels last), so a bad config fails before
  anything compiles."""
  module = _module(model_config.name)
  module.check_input(model_config, tuple(input_shape))
  return module.build(model_config, num_classes, axis_name)


def summary(model: nn.Module, input_shape: Sequence[int]) -> str:
  """Table of layers, output shapes and parameter counts (traced, not compiled); shapes
  batch first whatever layout the model computes in (the parameters are the same)."""
  if "layout" in model.__dataclass_fields__:
    model = model.clone(layout="batch_first")
  x = jnp.zeros((1, *input_shape), jnp.float32)
  return nn.tabulate(model, jax.random.key(0), depth=1, mutable=("params", "batch_stats"),
                     console_kwargs={"width": 120, "color_system": None, "force_terminal": False})(x)


def param_count(params) -> int:
  return sum(int(p.size) for p in jax.tree.leaves(params))
