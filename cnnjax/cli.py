"""The `cnnjax` command (also `python -m cnnjax`): one parser, one subcommand per task.

  cnnjax train --config configs/mnist.py --workdir runs/x [--params params.yaml] [--config.FIELD=VALUE ...]
  cnnjax plan configs/mnist.py [--memory-limit 2GiB] [--config.FIELD=VALUE ...]
  cnnjax exp show|diff|plot|reproduce ...   cnnjax sweep EXPERIMENT.py ...
  cnnjax viz|predict|eval RUN ...           cnnjax data convert ...   cnnjax dvc init ...

`cnnjax -h` and `cnnjax COMMAND -h` list every flag. cnnjax's own errors (a config field,
a data file, a run directory, a bad command line) print one line and exit 2, or 1 when a
run failed (a NaN loss, a checkpoint that cannot be written); `--debug` shows their
traceback. Any other exception is a bug and shows its traceback. A run stopped by a
signal exits 3 after saving a checkpoint. Modules are imported by the command that needs
them, so `cnnjax -h` and `cnnjax exp show` start without JAX.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from cnnjax.errors import EXIT_INTERRUPTED, CheckpointError, CnnjaxError, TrainingError
from cnnjax.exp import launchers  # Names only: each launcher imports its engine when made.

COMMAND_LINE = "command line"
OVERRIDES = ("any config field: --config.FIELD=VALUE, e.g. --config.optimizer.learning_rate=0.1 "
             "--config.model.conv_features='(9, 16)' (VALUE is read as a Python literal)")


def parser() -> argparse.ArgumentParser:
  """Every command and flag of `cnnjax`."""
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("--debug", action="store_true", help="show the traceback of an error")
  root = argparse.ArgumentParser(prog="cnnjax", allow_abbrev=False, description=(
      "Config-driven convolutional networks in JAX/Flax: one directory per run."))
  commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
  with_params = argparse.ArgumentParser(add_help=False)
  with_params.add_argument("--params", metavar="FILE.yaml", help="config fields from a YAML file "
                           "(nested keys, e.g. DVC's params.yaml); --config.FIELD=VALUE wins")
  add = lambda name, help, overrides=False, **kw: commands.add_parser(
      name, help=help, description=help, allow_abbrev=False,
      parents=[common, with_params] if overrides else [common],
      epilog=OVERRIDES if overrides else None, **kw)

  train = add("train", "train a config's model in --workdir (an existing one resumes)", True)
  train.add_argument("--config", required=True, metavar="FILE.py[:ARG]",
                     help="config file (get_config([ARG])), e.g. configs/mnist.py")
  train.add_argument("--workdir", required=True, help="run directory: records, metrics, checkpoints")
  train.set_defaults(handler=_train, overrides=True)
  plan = add("plan", "compile a config's train step without training: parameters, FLOPs, "
                     "memory per device, compile time", True)
  plan.add_argument("config", metavar="FILE.py[:ARG]", help="config file, e.g. configs/mnist.py")
  plan.add_argument("--memory-limit", metavar="SIZE", help="exit 2 when the step needs more per "
                    "device, e.g. 2GiB")
  plan.add_argument("--json", action="store_true", help="the figures as JSON")
  plan.set_defaults(handler=_plan, overrides=True)
  _exp_parsers(add("exp", "compare, plot and reproduce runs").add_subparsers(
      dest="action", required=True, metavar="ACTION"), common, with_params)
  _sweep_parser(add("sweep", "train every point of an experiment file, each in its own run "
                             "directory", True))
  convert = add("data", "prepare data sets").add_subparsers(dest="action", required=True).add_parser(
      "convert", parents=[common, with_params], allow_abbrev=False, epilog=OVERRIDES,
      help="write a config's data set as ArrayRecord files that stream from disk (train on "
      "them with --config.data.source=array_record --config.data.dir=OUTPUT)")
  convert.add_argument("--config", required=True, help="a config file naming the data set")
  convert.add_argument("--output", required=True, help="folder to write")
  convert.add_argument("--shard-examples", type=int, default=100_000, help="examples per file")
  convert.set_defaults(handler=_convert, overrides=True)
  dvc = add("dvc", "DVC pipelines that train cnnjax configs").add_subparsers(
      dest="action", required=True, metavar="ACTION").add_parser(
      "init", parents=[common], allow_abbrev=False, epilog=OVERRIDES,
      help="write params.yaml (the config's fields) and a dvc.yaml stage that trains the config, "
      "in this folder of a git repository with DVC: then `dvc exp run -S FIELD=VALUE`")
  dvc.add_argument("--config", required=True, metavar="FILE.py[:ARG]", help="the config to train")
  dvc.add_argument("--stage", default="train", help="the stage's name")
  dvc.add_argument("--workdir", help="the run directory, the stage's output (default runs/STAGE)")
  dvc.add_argument("--live", default="dvclive", help="the folder DVCLive writes (config.dvclive)")
  dvc.add_argument("--force", action="store_true", help="replace params.yaml and the stage")
  dvc.set_defaults(handler=_dvc_init, overrides=True)
  _run_readers(add)
  return root


def _exp_parsers(sub, common, with_params) -> None:
  add = lambda name, help, parents=(): sub.add_parser(
      name, help=help, description=help, parents=[common, *parents], allow_abbrev=False)
  show = add("show", "one row per run directory under each ROOT")
  show.add_argument("roots", nargs="*", default=["runs"], metavar="ROOT")
  show.add_argument("--all-params", action="store_true", help="every config field")
  show.add_argument("--sort-by", metavar="COLUMN", help="column to sort by")
  show.add_argument("--desc", action="store_true", help="sort descending")
  show.add_argument("--filter", action="append", default=[], metavar="EXPR",
                    help="e.g. 'test_accuracy>=0.99' or 'optimizer.name=adam'; repeatable")
  show.add_argument("--columns", help="comma-separated columns to show")
  show.add_argument("--aggregate", metavar="FIELD", help="one row per group of runs that differ "
                    "only in FIELD (e.g. seed): n, and each metric's mean and standard deviation")
  formats = show.add_mutually_exclusive_group()
  for name in ("csv", "md", "json"):
    formats.add_argument(f"--{name}", action="store_true", help=f"print {name.upper()}")
  show.set_defaults(handler=_show)
  diff = add("diff", "config fields and metrics of two runs")
  diff.add_argument("run_a")
  diff.add_argument("run_b")
  diff.set_defaults(handler=_diff)
  plot = add("plot", "learning curves of runs in one figure")
  plot.add_argument("runs", nargs="+", metavar="RUN")
  plot.add_argument("--metric", default="val_accuracy", help="any metrics.jsonl field, e.g. "
                    "train_loss (test_accuracy needs runs trained with config.test_curves=True)")
  plot.add_argument("-o", "--output", default="curves.png", help=".png, .svg or .pdf")
  plot.set_defaults(handler=_plot)
  repro = add("reproduce", "train a run again from its records and compare its metrics",
              [with_params])
  repro.add_argument("run")
  repro.add_argument("--workdir", help="default: RUN-repro")
  repro.epilog = OVERRIDES
  repro.set_defaults(handler=_reproduce, overrides=True)


def _sweep_parser(sweep) -> None:
  sweep.add_argument("experiment", metavar="EXPERIMENT.py")
  sweep.add_argument("--root", help="default: runs/<experiment name>")
  sweep.add_argument("--launcher", choices=launchers.NAMES, default="local", help="where points run: "
                     "processes on this machine, Ray tasks (on the cluster in RAY_ADDRESS, else "
                     "a local one), or a SLURM job array")
  sweep.add_argument("--workers", type=int, default=1, help="local: points at once")
  sweep.add_argument("--resources", metavar="cpu=N,gpu=M", help="ray, slurm: CPUs and GPUs per "
                     "point (default: the experiment's LAUNCH, else cpu=1,gpu=0)")
  sweep.add_argument("--max-parallel", type=int, metavar="N", help="ray, slurm: points at once")
  sweep.add_argument("--partition", help="slurm: partition")
  sweep.add_argument("--time", type=int, metavar="MINUTES", help="slurm: time limit per task")
  sweep.add_argument("--retry-failed", action="store_true", help="train failed points again")
  sweep.add_argument("--dry-run", action="store_true", help="list the points (and the halving "
                     "rungs, with the epochs each costs) only")
  sweep.add_argument("--no-halving", action="store_true", help="train every point to the end, "
                     "though the experiment declares HALVING")
  sweep.add_argument("--plan", action="store_true", help="with --dry-run: compile each point's "
                     "train step and print its parameters, FLOPs, memory (as `cnnjax plan`)")
  sweep.add_argument("--seeds", type=int, default=0, metavar="N",
                     help="repeat every point with seeds 0..N-1 (config.seed)")
  sweep.set_defaults(handler=_sweep, overrides=True)


def _run_readers(add) -> None:
  """viz, predict, eval: commands that read a trained run."""
  def reader(name, help, overrides=False):
    command = add(name, help, overrides)
    command.add_argument("run", metavar="RUN")
    command.add_argument("--checkpoint", choices=("selected", "latest"), default="selected",
                         help="the model the run delivers (config.checkpoint.select), or the "
                         "latest parameters")
    return command
  viz = reader("viz", "PNGs of a trained run: filters, feature maps, class activation maps, "
                      "confusion matrix, mistakes, learning curves (1-D, 2-D, 3-D inputs)")
  viz.add_argument("-o", "--output", help="folder for the PNGs (default RUN/viz)")
  example = viz.add_mutually_exclusive_group()
  example.add_argument("--index", type=int, default=0, help="test example for the feature maps")
  example.add_argument("--image", help="an image file (or a .npy example of the run's input) "
                       "for the feature maps instead")
  viz.set_defaults(handler=_viz)
  predict = reader("predict", "classify image files (PNG, JPEG) or .npy arrays of the run's "
                               "input (one example, or a batch)")
  predict.add_argument("images", nargs="+", metavar="IMAGE")
  predict.add_argument("--top-k", type=int, default=3)
  predict.add_argument("--json", action="store_true", help="print JSON")
  predict.set_defaults(handler=_predict)
  evaluate = reader("eval", "evaluate a run's checkpoint on its test set, or on another data "
                            "set given by data overrides (e.g. --config.data.dir=DIR)", True)
  evaluate.set_defaults(handler=_eval, overrides=True)
  for command in (viz, predict):
    command.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                         help="dark-on-light images are inverted to MNIST's light on dark")


def _overrides(args) -> dict[str, Any]:
  """A command's config overrides: its --params file's, then its --config.FIELD=VALUE
  arguments, which win; `args.origins` says where each one came from."""
  from cnnjax import config as config_lib
  file = getattr(args, "params", None)
  from_file = config_lib.params_file_overrides(file) if file else {}
  from_line = config_lib.command_line_overrides(args.extra)
  args.origins = {**dict.fromkeys(from_file, str(file)),
                  **dict.fromkeys(from_line, COMMAND_LINE)}
  return {**from_file, **from_line}


def _train(args) -> int:
  if os.environ.get("CNNJAX_CPUS"):  # Before JAX starts: XLA sizes its pools to these CPUs.
    os.sched_setaffinity(0, {int(c) for c in os.environ["CNNJAX_CPUS"].split(",")})
  from cnnjax import config as config_lib
  config = config_lib.load(args.config, _overrides(args))
  from cnnjax.train.loop import Interrupted, train_and_evaluate
  try:
    summary = train_and_evaluate(config, args.workdir, args.origins)
  except Interrupted as e:
    print(f"cnnjax train: interrupted: {e}", file=sys.stderr)
    return EXIT_INTERRUPTED
  if summary["status"] == "paused":
    print(f"paused after epoch {summary['paused_at_epoch']} of {config.num_epochs} "
          f"(config.pause_at_epoch); {args.workdir}")
    return 0
  early = f"; {summary['stopped_early']}" if summary.get("stopped_early") else ""
  print(f"finished: test accuracy {summary['test_accuracy']:.4f} after {summary['epochs']} "
        f"epochs (model of epoch {summary['selected_epoch']}){early}; {args.workdir}")
  return 0


def _show(args) -> int:
  from cnnjax.exp import table
  result = table.show(args.roots, all_params=args.all_params, aggregate=args.aggregate)
  result = result.filter(args.filter)
  if args.sort_by:
    result = result.sort(args.sort_by, descending=args.desc)
  if args.columns:
    result = result.select([c.strip() for c in args.columns.split(",")])
  print(result.to_csv() if args.csv else result.to_markdown() if args.md
        else result.to_json() if args.json else result.to_text())
  return 0


def _diff(args) -> int:
  from cnnjax.exp import table
  print(table.format_diff(table.diff(args.run_a, args.run_b)))
  return 0


def _plot(args) -> int:
  from cnnjax.exp.plot import plot_runs
  print(plot_runs(args.runs, args.metric, args.output))
  return 0


def _reproduce(args) -> int:
  from cnnjax.exp import reproduce
  report = reproduce.reproduce(args.run, args.workdir, _overrides(args))
  print(reproduce.format_report(report))
  return 0 if report["exact"] else 1


def _plan(args) -> int:
  from cnnjax import config as config_lib
  from cnnjax.train import plan
  limit = plan.parse_bytes(args.memory_limit) if args.memory_limit else None
  result = plan.plan(config_lib.load(args.config, _overrides(args)))
  print(json.dumps(result.as_dict(), indent=2) if args.json else plan.format_plan(result))
  if limit is not None:
    plan.check_limit(result, limit)
  return 0


def _sweep(args) -> int:
  from cnnjax.exp import sweep
  return sweep.command(args, _overrides(args))


def _convert(args) -> int:
  from cnnjax import config as config_lib, data
  from cnnjax.data import array_record
  # Every example: the config that trains on the converted set holds out its own split.
  config = config_lib.load(args.config, {**_overrides(args), "data.validation_examples": 0,
                                         "data.train_examples": 0})
  dataset = data.load(config.data)
  folder = array_record.convert(dataset, Path(args.output), args.shard_examples)
  print(f"wrote {len(dataset.train_labels):,} training and {len(dataset.test_labels):,} test "
        f"examples of {dataset.location} to {folder}; train on them with "
        f"--config.data.source=array_record --config.data.dir={folder}")
  return 0


def _dvc_init(args) -> int:
  from cnnjax.exp import dvc
  for line in dvc.init(args.config, _overrides(args), args.stage, args.workdir, args.live,
                       args.force):
    print(line)
  return 0


def _viz(args) -> int:
  from cnnjax.viz.report import visualize
  for path in visualize(args.run, args.output, args.index, args.image, args.checkpoint, args.invert):
    print(path)
  return 0


def _predict(args) -> int:
  from cnnjax.viz.report import predict_files
  results = predict_files(args.run, args.images, args.top_k, args.invert, args.checkpoint)
  if args.json:
    print(json.dumps(results, indent=2))
  for r in [] if args.json else results:
    where = r["file"] + (f"[{r['index']}]" if "index" in r else "")
    print(f"{where}: " + "  ".join(f"{t['class']} ({t['probability']:.1%})" for t in r["top"]))
  return 0


def _eval(args) -> int:
  from cnnjax.viz.report import evaluate_on, format_eval
  print(format_eval(evaluate_on(args.run, _overrides(args), args.checkpoint)))
  return 0


def _name(args) -> str:
  return " ".join(filter(None, ["cnnjax", args.command, getattr(args, "action", None)]))


def main(argv: list[str] | None = None) -> int:
  """Runs a cnnjax command line (`argv` without the program name) in this process."""
  cli = parser()
  try:
    args, args.extra = cli.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.extra and not getattr(args, "overrides", False):
      cli.error(f"unrecognized arguments: {' '.join(args.extra)}")
  except SystemExit as e:  # argparse printed the help, or the usage error.
    return e.code or 0
  try:
    return args.handler(args)
  except (TrainingError, CheckpointError) as e:  # The run itself failed.
    return _fail(f"{_name(args)}: failed: {e}", args.debug, code=1)
  except CnnjaxError as e:
    return _fail(f"{_name(args)}: error: {e}{_origin(e, args)}", args.debug, code=2)


def _origin(error: CnnjaxError, args) -> str:
  """Where the override behind a config error came from, when a params file set it."""
  key = getattr(error, "override", getattr(error, "field", None))
  origin = getattr(args, "origins", {}).get(key)
  return f" (set by {origin}: {key})" if origin and origin != COMMAND_LINE else ""


def _fail(message: str, debug: bool, code: int) -> int:
  if debug:
    traceback.print_exc()
  print(message, file=sys.stderr)
  return code


def entry() -> None:
  """The `cnnjax` executable (and `python -m cnnjax`): its process is the command's own."""
  argv = sys.argv[1:]
  if argv and not argv[0].startswith("-"):
    from cnnjax import runtime
    runtime.start_command(argv[0])
  sys.exit(main(argv))


if __name__ == "__main__":
  entry()
