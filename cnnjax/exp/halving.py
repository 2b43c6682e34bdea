"""Successive halving over a sweep's points, exact. An experiment file declares

    HALVING = hyper.halving(metric="val_accuracy", min_epochs=1, eta=3)

and `cnnjax sweep` trains every point to epoch `min_epochs` (rung 0), the best 1/eta of
them to `min_epochs * eta`, and so on until the survivors train to `num_epochs` (at once
when one is left). A rung trains its points with config.pause_at_epoch at the rung's
epoch (none at the last rung): each point's schedule stays over its full budget, and a
promoted point resumes its own checkpoint, ending bit-identical to the same point trained
straight through. Points that differ only in their seed are one candidate, ranked by the
mean of its seeds. The decisions, and the values behind them, are in ROOT/halving.json:
the same command again trains nothing, and a sweep stopped mid-rung resumes that rung.
Nothing here depends on the launcher, so local, Ray and SLURM sweeps decide the same.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path
from typing import Any, Sequence

from cnnjax import config as config_lib
from cnnjax.errors import UsageError
from cnnjax.files import read_json
from cnnjax.runs import records
from cnnjax.runs.reader import RunRecord

FILE = "halving.json"
# What every evaluation records and a decision may read: validation and training
# figures, never a test one.
METRICS = ("val_accuracy", "val_loss", "ema_val_accuracy", "ema_val_loss", "train_accuracy",
           "train_loss")


@dataclasses.dataclass(frozen=True)
class Halving:
  metric: str = "val_accuracy"  # Higher is better for *_accuracy, lower for *_loss.
  min_epochs: int = 1  # Rung 0's epochs; rung k trains to min_epochs * eta**k.
  eta: int = 3  # 1/eta of a rung's candidates go on to the next.

  @property
  def higher_is_better(self) -> bool:
    return self.metric.endswith("accuracy")

  def describe(self) -> str:
    better = "higher" if self.higher_is_better else "lower"
    return (f"successive halving on {self.metric} ({better} is better), eta {self.eta}, "
            f"from {self.min_epochs} epoch{'s' * (self.min_epochs != 1)}")


def _fail(field: str, message: str):
  raise UsageError(f"HALVING.{field}: {message}")


def rungs(halving: Halving, candidates: int, num_epochs: int) -> list[tuple[int, int]]:
  """(epoch, candidates) of each rung; the last trains its candidates to num_epochs."""
  out, epoch, alive = [], halving.min_epochs, candidates
  while epoch < num_epochs and alive > 1:
    out.append((epoch, alive))
    alive, epoch = max(1, alive // halving.eta), min(epoch * halving.eta, num_epochs)
  return out + [(num_epochs, alive)]


def cost(plan: Sequence[tuple[int, int]], seeds: int) -> int:
  """Epochs trained over the rungs: a promoted point only trains the epochs it lacks."""
  before, total = 0, 0
  for epoch, alive in plan:
    total, before = total + alive * seeds * (epoch - before), epoch
  return total


def check(halving: Halving, configs: Sequence[Any], groups: dict[str, list[str]]) -> int:
  """Raises UsageError naming the HALVING field that cannot work with these point
  configs, before anything trains; returns their one num_epochs."""
  if not isinstance(halving, Halving):
    raise UsageError(f"HALVING must be hyper.halving(metric=..., min_epochs=..., eta=...), "
                     f"got {halving!r}")
  metric = halving.metric
  if metric.startswith(("test_", "ema_test_", "final_")):
    _fail("metric", f"{metric!r} is a test figure: decisions read validation or training "
          f"figures only ({', '.join(METRICS)})")
  if metric not in METRICS:
    _fail("metric", f"runs do not record {metric!r} at their evaluations: use one of "
          f"{', '.join(METRICS)}")
  if not isinstance(halving.eta, int) or halving.eta < 2:
    _fail("eta", f"must be an integer >= 2 (the fraction 1/eta goes on), got {halving.eta!r}")
  epochs = sorted({c.num_epochs for c in configs})
  if len(epochs) > 1:
    raise UsageError(f"config.num_epochs: halving gives every point one budget; the points "
                     f"train for {epochs} epochs")
  num_epochs = epochs[0]
  if not isinstance(halving.min_epochs, int) or not 1 <= halving.min_epochs <= num_epochs:
    _fail("min_epochs", f"must be an integer in [1, config.num_epochs={num_epochs}], got "
          f"{halving.min_epochs!r}")
  if len(groups) < halving.eta:
    _fail("eta", f"the experiment has {len(groups)} point{'s' * (len(groups) != 1)} (seeds "
          f"aside), fewer than eta={halving.eta}: there is nothing to halve")
  for config in configs:
    if metric.startswith(("val_", "ema_val_")) and not config.data.validation_examples:
      _fail("metric", f"{metric!r} needs a validation split: set config.data.validation_examples")
    if metric.startswith("ema_") and not config.optimizer.ema_decay:
      _fail("metric", f"{metric!r} needs the moving average: set config.optimizer.ema_decay")
    stops = [e for e, _ in rungs(halving, len(groups), num_epochs)[:-1]
             if e % config.eval_every_epochs]
    if stops:
      _fail("min_epochs", f"rungs end at epochs {stops}, where the runs do not evaluate "
            f"(config.eval_every_epochs={config.eval_every_epochs})")
  return num_epochs


def value(record: RunRecord, epoch: int, metric: str) -> float | None:
  """The metric at the evaluation of `epoch` (a run that stopped early before it: at its
  last), or None for a run that failed or never got there."""
  if record.status not in ("finished", "paused"):
    return None
  history = [r for r in record.metrics() if r["epoch"] <= epoch]
  if not history or (history[-1]["epoch"] < epoch and not record.summary.get("stopped_early")):
    return None
  found = history[-1].get(metric)
  return found if isinstance(found, (int, float)) and math.isfinite(found) else None


def decide(halving: Halving, values: dict[str, float | None], keep: int) -> list[str]:
  """The `keep` best candidates by their values (missing ones last, ties in point order)."""
  sign = -1.0 if halving.higher_is_better else 1.0
  order = sorted(values, key=lambda c: (values[c] is None, sign * (values[c] or 0.0)))
  return order[:keep]


def mean_value(members: Sequence[RunRecord], epoch: int, metric: str) -> float | None:
  """A candidate's value: the mean over its seeds; None when any seed has none."""
  found = [value(r, epoch, metric) for r in members]
  return None if any(v is None for v in found) else statistics.fmean(found)


class Decisions:
  """ROOT/halving.json: the setup, and each rung's values and promoted candidates."""

  def __init__(self, root: Path, halving: Halving, num_epochs: int,
               groups: dict[str, list[str]]):
    self.path = Path(root) / FILE
    self.setup = {**dataclasses.asdict(halving), "num_epochs": num_epochs,
                  "candidates": {c: list(names) for c, names in groups.items()}}
    stored = read_json(self.path)
    if stored is not None:
      changed = [k for k in self.setup if stored.get(k) != self.setup[k]]
      if changed:
        what = "; ".join("other points or seeds" if k == "candidates" else
                         f"{k} {stored.get(k)!r} -> {self.setup[k]!r}" for k in changed)
        raise UsageError(f"{self.path} was written by another halving setup ({what}): its "
                         f"decisions cannot be mixed with this one's; use a new --root")
    self.rungs: list[dict] = list((stored or {}).get("rungs", []))

  def get(self, rung: int) -> dict | None:
    return self.rungs[rung] if rung < len(self.rungs) else None

  def record(self, rung: int, epoch: int, values: dict[str, float | None],
             chosen: list[str]) -> None:
    key = "delivered" if epoch == self.setup["num_epochs"] else "promoted"
    self.rungs[rung:] = [{"rung": rung, "epoch": epoch, "values": values, key: chosen}]
    records.write_json(self.path, {**self.setup, "rungs": self.rungs})


def rung_epochs(root: Path) -> list[int]:
  """The epochs at which ROOT's halving rungs end (none without a halving.json)."""
  stored = read_json(Path(root) / FILE) or {}
  return [r["epoch"] for r in stored.get("rungs", [])]


def delivered(root: Path) -> bool:
  """Whether ROOT's halving decided its last rung."""
  stored = read_json(Path(root) / FILE) or {}
  return bool(stored.get("rungs")) and "delivered" in stored["rungs"][-1]


def status(record: RunRecord, epochs: Sequence[int]) -> str:
  """A paused run's status in a table: "stopped at rung k (epoch e)" in a halving sweep."""
  epoch = record.summary.get("paused_at_epoch")
  if epoch in epochs:
    return f"stopped at rung {list(epochs).index(epoch)} (epoch {epoch})"
  return f"paused at epoch {epoch}"


def dry_run_lines(halving: Halving, plan: Sequence[tuple[int, int]], seeds: int,
                  num_epochs: int) -> list[str]:
  """What `cnnjax sweep --dry-run` says of the rungs: points, epochs, the cost."""
  lines, before = [halving.describe() + ":"], 0
  for k, (epoch, alive) in enumerate(plan):
    runs = f"{alive} point{'s' * (alive != 1)}" + (f" x {seeds} seeds" if seeds > 1 else "")
    lines.append(f"  rung {k}: {runs} to epoch {epoch} ({alive * seeds * (epoch - before)} "
                 f"epochs)")
    before = epoch
  full = plan[0][1] * seeds * num_epochs
  total = cost(plan, seeds)
  lines.append(f"  {total} epochs in all, {100 * total / full:.0f}% of the full grid's {full}")
  return lines


def point_configs(configs: dict[str, Any], epoch: int, num_epochs: int) -> dict[str, Any]:
  """The configs of a rung's points: paused at its epoch, or not at all at the last."""
  pause = 0 if epoch == num_epochs else epoch
  return {name: config_lib.with_overrides(c, {"pause_at_epoch": pause})
          for name, c in configs.items()}
