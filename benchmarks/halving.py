"""Successive halving against the whole grid: what it costs and what it delivers.

  python benchmarks/halving.py --data DIR [--experiment experiments/talk_ablation.py]
      [--seeds 3] [--workers 2] [--out runs/bench_halving]
  python benchmarks/halving.py --compare HALVING_ROOT GRID_ROOT   # sweeps already run

Runs the experiment's sweep with its HALVING and again with --no-halving (each into a
fresh root under --out, timed from the command's start to its end), then prints for both
the epochs trained (the lines of every point's metrics.jsonl) and the wall time, and
where the point that halving delivers ranks in the grid's table by the halving metric
(mean over seeds, as the rungs decide). With --compare, the wall times are read from the
runs' records instead: from the first point's start to the last point's end.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path


def _sweep(experiment: str, root: Path, args, *extra: str) -> float:
  if root.exists():
    sys.exit(f"{root} exists: give another --out (this benchmark times fresh sweeps)")
  command = [sys.executable, "-m", "cnnjax", "sweep", experiment, "--root", str(root),
             "--seeds", str(args.seeds), "--workers", str(args.workers),
             f"--config.data.dir={args.data}", *extra]
  start = time.perf_counter()
  done = subprocess.run(command, capture_output=True, text=True)
  if done.returncode:
    sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
  return time.perf_counter() - start


def _recorded_wall(root: Path) -> float:
  """Seconds from the first point's start to the last point's end, from the records."""
  stamp = datetime.datetime.fromisoformat
  runs = [p for p in root.iterdir() if (p / "summary.json").is_file()]
  starts = [stamp(json.loads((p / "run.json").read_text())["start_time"]) for p in runs]
  ends = [stamp(json.loads((p / "summary.json").read_text())["ended"]) for p in runs]
  return (max(ends) - min(starts)).total_seconds()


def _epochs(root: Path) -> int:
  return sum(len((p / "metrics.jsonl").read_text().splitlines())
             for p in root.iterdir() if (p / "metrics.jsonl").is_file())


def _rank(halving_root: Path, grid_root: Path) -> tuple[str, str, int, list]:
  """(the delivered point, the metric, its rank in the grid, the grid's ordered rows)."""
  from cnnjax.exp import table
  stored = json.loads((halving_root / "halving.json").read_text())
  delivered, metric = stored["rungs"][-1]["delivered"][0], stored["metric"]
  grid = table.show([grid_root], aggregate="seed").sort(metric, descending=metric.endswith("accuracy"))
  names = [row["run"].replace(",seed=*", "") for row in grid.rows]
  return delivered, metric, names.index(delivered) + 1, [(n, r[f"{metric}_mean"]) for n, r in zip(names, grid.rows)]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", help="the MNIST IDX folder (config.data.dir)")
  parser.add_argument("--experiment", default="experiments/talk_ablation.py")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--out", default="runs/bench_halving")
  parser.add_argument("--compare", nargs=2, metavar=("HALVING_ROOT", "GRID_ROOT"))
  args = parser.parse_args()
  if args.compare:
    roots = [Path(r) for r in args.compare]
    walls = [_recorded_wall(r) for r in roots]
  else:
    if not args.data:
      parser.error("--data is needed to run the sweeps")
    roots = [Path(args.out) / "halving", Path(args.out) / "grid"]
    walls = [_sweep(args.experiment, roots[0], args), _sweep(args.experiment, roots[1], args,
                                                             "--no-halving")]
  epochs = [_epochs(r) for r in roots]
  delivered, metric, rank, grid = _rank(*roots)
  cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
              if l.startswith("model name")), platform.machine())
  print(f"{cpu}; {args.experiment}, --seeds {args.seeds}, --workers {args.workers}")
  print(f"{'':8}  {'epochs':>6}  {'wall s':>7}")
  for name, e, w in zip(("halving", "grid"), epochs, walls):
    print(f"{name:8}  {e:6d}  {w:7.0f}")
  print(f"halving: {100 * epochs[0] / epochs[1]:.0f}% of the grid's epochs, "
        f"{100 * walls[0] / walls[1]:.0f}% of its wall time")
  print(f"halving delivers {delivered}: rank {rank} of {len(grid)} in the grid by {metric} "
        f"(mean over seeds)")
  for i, (name, value) in enumerate(grid[:5], 1):
    print(f"  {i}. {name}  {value:.4f}")


if __name__ == "__main__":
  main()
