"""Points of a sweep as data, in the spirit of big_vision's `hyper`:

    hyper.product([hyper.sweep("model.conv_features", [(4, 16), (8, 16)]),
                   hyper.sweep("optimizer.learning_rate", [0.02, 0.05])])

Each point is a dict of config overrides {'field.path': value}. A leading 'config.'
in a field name is dropped. `halving(...)` declares successive halving over the points
(`HALVING = hyper.halving(metric="val_accuracy", min_epochs=1, eta=3)` in an experiment).
"""
from __future__ import annotations

import builtins
import itertools
from typing import Any, Iterable, Sequence

from cnnjax.errors import UsageError
from cnnjax.exp.halving import Halving

Point = dict[str, Any]


def _field(name: str) -> str:
  return name[len("config."):] if name.startswith("config.") else name


def sweep(field: str, values: Iterable[Any]) -> list[Point]:
  return [{_field(field): v} for v in values]


def fixed(field: str, value: Any) -> list[Point]:
  return [{_field(field): value}]


def product(parts: Sequence[list[Point]]) -> list[Point]:
  """Every combination: the first part varies slowest."""
  return [{k: v for point in combo for k, v in point.items()}
          for combo in itertools.product(*parts)]


def zip(parts: Sequence[list[Point]]) -> list[Point]:  # noqa: A001 - big_vision's name.
  """Points merged position by position; all parts must have the same length."""
  lengths = {len(p) for p in parts}
  if len(lengths) > 1:
    raise UsageError(f"hyper.zip needs parts of one length, got {sorted(lengths)}")
  return [{k: v for point in combo for k, v in point.items()} for combo in builtins.zip(*parts)]


def chain(*parts: list[Point]) -> list[Point]:
  return [point for part in parts for point in part]


def with_seeds(points: Sequence[Point], n: int) -> list[Point]:
  """Every point repeated with config.seed = 0 .. n-1 (`cnnjax sweep --seeds n`), for
  `cnnjax exp show --aggregate seed`."""
  if n < 1:
    raise UsageError(f"--seeds must be >= 1, got {n}")
  return product([list(points), sweep("seed", range(n))])


def halving(metric: str = "val_accuracy", min_epochs: int = 1, eta: int = 3) -> Halving:
  """Successive halving: every point to `min_epochs`, the best 1/eta by `metric` (a
  validation or training figure; higher is better for accuracies, lower for losses) on to
  `min_epochs * eta`, and so on to config.num_epochs (cnnjax.exp.halving)."""
  return Halving(metric, min_epochs, eta)
