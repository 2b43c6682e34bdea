"""A class's keyword arguments as config fields: how a model (cnnjax.models) and a data
source (cnnjax.data) own theirs.

The fields of `config.model` are its model class's constructor arguments with defaults,
those of `config.data` its source class's (beside the shared fields of each section).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import types
import typing
from typing import Any

from ml_collections import config_dict

from cnnjax.errors import ConfigError


def builtin(package) -> list[str]:
  """The modules of `package` (a package, or its name) that name a class by their own name
  (not _private ones, nor those in `package.NOT_CLASSES`)."""
  package = importlib.import_module(package) if isinstance(package, str) else package
  skip = getattr(package, "NOT_CLASSES", ())
  return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                if not m.name.startswith("_") and m.name not in skip)


def find_class(package: str, name: str, attr: str, field: str):
  """The class a config's `field` names: a module `name` of the package named `package`
  (its `attr`), or `package.module:Class` anywhere."""
  if ":" in name:
    module_name, _, class_name = name.partition(":")
    try:
      cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
      raise ConfigError(field, f"cannot import {name!r}: {e}") from e
  elif name in builtin(package):
    cls = getattr(importlib.import_module(f"{package}.{name}"), attr)
  else:
    raise ConfigError(field, f"{name!r} is not one of {', '.join(map(repr, builtin(package)))} "
                      f"(or a class of your own, as 'package.module:Class')")
  if not inspect.isclass(cls):
    raise ConfigError(field, f"{name!r} is not a class")
  return cls


def parameters(cls) -> list[inspect.Parameter]:
  """The parameters of `cls`'s constructor (an NNX module's `__init__`, which the
  signature of its class hides behind its metaclass's `(*args, **kwargs)`)."""
  params = list(inspect.signature(cls).parameters.values())
  if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
  return params


def defaults(cls, provided: tuple[str, ...], field: str) -> dict[str, Any]:
  """Keyword arguments of `cls`'s constructor with their defaults, but the `provided` ones
  (which the caller passes, or Flax does)."""
  out = {}
  for p in parameters(cls):
    if p.name in provided or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
      continue
    if p.default is p.empty:
      raise ConfigError(field, f"{cls.__module__}.{cls.__qualname__}'s argument {p.name!r} "
                        f"has no default: give it one (it is a config field)")
    out[p.name] = tuple(p.default) if isinstance(p.default, list) else p.default
  return out


def _hints(cls) -> dict[str, Any]:
  try:
    return typing.get_type_hints(cls if dataclasses.is_dataclass(cls) else cls.__init__)
  except Exception:  # Annotations that do not resolve: fields are typed by their defaults.
    return {}


def config_value(default, hint=None):
  """A ConfigDict value for a field: typed by its default (a misfit value is an error),
  except that a field annotated `Any` or a union (a size or sizes, or None) takes any
  value, and a float field takes numbers."""
  loose = hint is Any or hint is object or typing.get_origin(hint) in (typing.Union, types.UnionType)
  if default is None or loose:
    return config_dict.FieldReference(default, field_type=object)
  if hint is float and isinstance(default, int):
    return float(default)
  return default


def add_fields(section, cls, provided: tuple[str, ...], field: str) -> None:
  """Adds `cls`'s config fields with their defaults to the ConfigDict `section`."""
  hints = _hints(cls)
  for name, default in defaults(cls, provided, field).items():
    section[name] = config_value(default, hints.get(name))


def not_a_field(kind: str, name: str, own, shared) -> str:
  return (f"not a field of {kind} {name!r} (its fields: {', '.join(sorted(own)) or 'none'}; "
          f"shared: {', '.join(sorted(shared))})")


def set_values(section, values: dict[str, Any], prefix: str, kind: str, name: str,
               shared) -> None:
  """Sets `values` in the ConfigDict `section` (config.model or config.data, named by
  `prefix`, of the model or source `name`); a field it lacks is a ConfigError."""
  for field, value in values.items():
    if field not in section:
      own = set(section) - set(shared)
      raise ConfigError(f"{prefix}.{field}", not_a_field(kind, name, own, shared))
    section[field] = value


def check_own(section, own, shared, prefix: str, kind: str, name: str) -> None:
  """ConfigError naming the first key of `section` that is neither one of the class's
  `own` fields nor `shared`."""
  extra = next((key for key in section if key not in own and key not in shared), None)
  if extra:
    raise ConfigError(f"{prefix}.{extra}", not_a_field(kind, name, own, shared))
