"""The `cnnjax` commands besides `train` (exp, sweep, data, viz, predict, eval): their flags,
and the glue from flags to the modules that do the work."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from cnnjax.errors import CnnjaxError
from cnnjax.exp import launchers  # Names only: each launcher imports its engine when made.


def _overrides(extra: list[str]) -> dict[str, str]:
  """The command's --config.FIELD=VALUE overrides."""
  from cnnjax import config as config_lib
  return config_lib.command_line_overrides(extra)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="cnnjax")
  commands = parser.add_subparsers(dest="command", required=True)
  exp = commands.add_parser("exp", help="compare, plot and reproduce runs")
  sub = exp.add_subparsers(dest="action", required=True)

  show = sub.add_parser("show", help="one row per run directory under each ROOT")
  show.add_argument("roots", nargs="*", default=["runs"])
  show.add_argument("--all-params", action="store_true", help="every config field")
  show.add_argument("--sort-by", help="column to sort by")
  show.add_argument("--desc", action="store_true", help="sort descending")
  show.add_argument("--filter", action="append", default=[],
                    help="e.g. 'test_accuracy>=0.99' or 'optimizer.name=adam'; repeatable")
  show.add_argument("--columns", help="comma-separated columns to show")
  show.add_argument("--aggregate", metavar="FIELD",
                    help="one row per group of runs that differ only in FIELD (e.g. seed): "
                    "n, and each metric's mean and standard deviation")
  fmt = show.add_mutually_exclusive_group()
  for name in ("csv", "md", "json"):
    fmt.add_argument(f"--{name}", action="store_true")

  diff = sub.add_parser("diff", help="config fields and metrics of two runs")
  diff.add_argument("run_a")
  diff.add_argument("run_b")

  plot = sub.add_parser("plot", help="learning curves of runs in one figure")
  plot.add_argument("runs", nargs="+")
  plot.add_argument("--metric", default="val_accuracy",
                    help="any metrics.jsonl field, e.g. train_loss; test_accuracy needs "
                    "runs trained with config.test_curves=True")
  plot.add_argument("-o", "--output", default="curves.png", help=".png, .svg or .pdf")

  repro = sub.add_parser("reproduce", help="train a run again and compare its metrics")
  repro.add_argument("run")
  repro.add_argument("--workdir", help="default: RUN-repro")

  viz = commands.add_parser("viz", help="PNGs of a trained run: filters, feature maps, "
                            "confusion matrix, mistakes, learning curves")
  viz.add_argument("run")
  viz.add_argument("-o", "--output", help="folder for the PNGs (default RUN/viz)")
  source = viz.add_mutually_exclusive_group()
  source.add_argument("--index", type=int, default=0, help="test example for the feature maps")
  source.add_argument("--image", help="an image file for the feature maps instead")

  predict = commands.add_parser("predict", help="classify image files (PNG, JPEG, .npy)")
  predict.add_argument("run")
  predict.add_argument("images", nargs="+")
  predict.add_argument("--top-k", type=int, default=3)
  predict.add_argument("--json", action="store_true")

  evaluate = commands.add_parser("eval", help="evaluate a run's checkpoint on a data set; "
                                 "--config.data.dir=DIR (or any data field) picks another")
  evaluate.add_argument("run")
  for command in (viz, predict, evaluate):
    command.add_argument("--checkpoint", choices=("selected", "latest"), default="selected",
                         help="the model the run delivers (config.checkpoint.select), or the "
                         "latest parameters")
  for command in (viz, predict):
    command.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                         help="dark-on-light images are inverted to MNIST's light on dark")

  data = commands.add_parser("data", help="prepare data sets")
  convert = data.add_subparsers(dest="action", required=True).add_parser(
      "convert", help="write a config's data set as ArrayRecord files that stream from disk "
      "(train on them with --config.data.source=array_record --config.data.dir=OUTPUT)")
  convert.add_argument("--config", required=True, help="a config file naming the data set")
  convert.add_argument("--output", required=True, help="folder to write")
  convert.add_argument("--shard-examples", type=int, default=100_000,
                       help="examples per ArrayRecord file")

  sweep = commands.add_parser("sweep", help="train every point of an experiment file")
  sweep.add_argument("experiment")
  sweep.add_argument("--root", help="default: runs/<experiment name>")
  sweep.add_argument("--launcher", choices=launchers.NAMES, default="local",
                     help="where points run: processes on this machine, Ray tasks (on the "
                     "cluster in RAY_ADDRESS, else a local one), or a SLURM job array")
  sweep.add_argument("--workers", type=int, default=1, help="local: points at once")
  sweep.add_argument("--resources", metavar="cpu=N,gpu=M",
                     help="ray, slurm: CPUs and GPUs per point (default from the experiment's "
                     "LAUNCH, else cpu=1,gpu=0)")
  sweep.add_argument("--max-parallel", type=int, help="ray, slurm: points at once")
  sweep.add_argument("--partition", help="slurm: partition")
  sweep.add_argument("--time", type=int, metavar="MINUTES", help="slurm: time limit per task")
  sweep.add_argument("--retry-failed", action="store_true")
  sweep.add_argument("--dry-run", action="store_true", help="list the points only")
  sweep.add_argument("--seeds", type=int, default=0, metavar="N",
                     help="repeat every point with seeds 0..N-1 (config.seed)")
  return parser


def _show(args) -> int:
  from cnnjax.exp import table
  result = table.show(args.roots, all_params=args.all_params,
                      aggregate=args.aggregate).filter(args.filter)
  if args.sort_by:
    result = result.sort(args.sort_by, descending=args.desc)
  if args.columns:
    result = result.select([c.strip() for c in args.columns.split(",")])
  print(result.to_csv() if args.csv else result.to_markdown() if args.md
        else result.to_json() if args.json else result.to_text())
  return 0


def _launch_options(args, from_file: dict) -> dict:
  options = dict(from_file, workers=args.workers)
  for pair in (args.resources or "").split(","):
    if pair.strip():
      key, sep, value = pair.partition("=")
      if not sep or key.strip() not in ("cpu", "gpu"):
        raise CnnjaxError(f"--resources {args.resources!r}: give cpu=N,gpu=M")
      options[key.strip()] = float(value)
  for key in ("max_parallel", "partition", "time"):
    if getattr(args, key) is not None:
      options[key] = getattr(args, key)
  return options


def _convert(args, extra) -> int:
  from cnnjax import config as config_lib, data
  from cnnjax.data import arrayrecord
  # Every example: the config that trains on the converted set holds out its own split.
  config = config_lib.load(args.config, {**_overrides(extra),
                                         "data.validation_examples": 0, "data.train_examples": 0})
  dataset = data.load(config.data)
  folder = arrayrecord.convert(dataset, Path(args.output), args.shard_examples)
  print(f"wrote {len(dataset.train_labels):,} training and {len(dataset.test_labels):,} test "
        f"examples of {dataset.location} to {folder}; train on them with "
        f"--config.data.source=array_record --config.data.dir={folder}")
  return 0


def _sweep(args, extra) -> int:
  if args.launcher == "ray" and not args.dry_run:
    from cnnjax.exp.launchers import ray_tasks
    ray_tasks.connect()  # Before the experiment file imports JAX.
  from cnnjax.exp import sweep
  experiment = sweep.load_experiment(args.experiment)
  points = experiment.points
  if args.seeds:
    from cnnjax.exp import hyper
    points = hyper.with_seeds(points, args.seeds)
  root = Path(args.root or f"runs/{Path(args.experiment).stem}")
  overrides = _overrides(extra)
  if args.dry_run:
    for point in points:
      sweep.point_config(experiment.base, point, overrides)  # Bad fields fail here, before training.
      print(f"{root}/{sweep.point_name(point)}  {json.dumps(point, default=str)}")
    return 0
  launcher = launchers.make(args.launcher, root, _launch_options(args, experiment.launch))
  signal.signal(signal.SIGTERM, signal.default_int_handler)  # Stops like Ctrl-C.
  try:
    result = sweep.run_sweep(experiment.base, points, root, launcher,
                             retry_failed=args.retry_failed, overrides=overrides)
  except KeyboardInterrupt:
    print("cnnjax sweep: stopped; points in progress saved a checkpoint and resume when the "
          "same sweep runs again", file=sys.stderr)
    return 130
  print("\n" + result.to_text())
  if args.seeds:
    from cnnjax.exp import table
    print("\n" + table.show([root], aggregate="seed").to_text())
  return 0 if all(r["status"] == "finished" for r in result.rows) else 1


def _run(args, extra) -> int:
  if args.command == "viz":
    from cnnjax.viz.report import visualize
    for path in visualize(args.run, args.output, args.index, args.image, args.checkpoint,
                          args.invert):
      print(path)
    return 0
  if args.command == "predict":
    from cnnjax.viz.report import predict_files
    results = predict_files(args.run, args.images, args.top_k, args.invert, args.checkpoint)
    if args.json:
      print(json.dumps(results, indent=2))
    for r in [] if args.json else results:
      print(f"{r['file']}: " + "  ".join(f"{t['class']} ({t['probability']:.1%})" for t in r["top"]))
    return 0
  if args.command == "eval":
    from cnnjax.viz.report import evaluate_on, format_eval
    print(format_eval(evaluate_on(args.run, _overrides(extra), args.checkpoint)))
    return 0
  if args.command == "sweep":
    return _sweep(args, extra)
  if args.command == "data":
    return _convert(args, extra)
  if args.action == "show":
    return _show(args)
  if args.action == "diff":
    from cnnjax.exp import table
    print(table.format_diff(table.diff(args.run_a, args.run_b)))
    return 0
  if args.action == "plot":
    from cnnjax.exp.plot import plot_runs
    print(plot_runs(args.runs, args.metric, args.output))
    return 0
  from cnnjax.exp import reproduce
  report = reproduce.reproduce(args.run, args.workdir, _overrides(extra))
  print(reproduce.format_report(report))
  return 0 if report["exact"] else 1


def main(argv) -> int:
  parser = _parser()
  args, extra = parser.parse_known_args(argv)
  takes_config = args.command in ("sweep", "data", "eval") or getattr(args, "action", "") == "reproduce"
  if extra and not takes_config:
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  try:
    return _run(args, extra)
  except (CnnjaxError, ValueError, FileNotFoundError, KeyError) as e:
    print(f"cnnjax {args.command}: error: {e}", file=sys.stderr)
    return 2
