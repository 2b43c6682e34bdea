"""The `cnnjax` command (also `python -m cnnjax`).

  cnnjax train --config configs/mnist.py --workdir runs/x [--config.a.b=value ...]

Errors a user can fix (config, data, workdir) print one line and exit 2; --debug adds
the traceback. A run stopped by SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 exits 3 after saving a
checkpoint.
CNNJAX_CPUS=0,1 pins the training process to those CPUs (what `cnnjax sweep` gives each
worker).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from cnnjax import config as config_lib

USAGE = """usage: cnnjax COMMAND [flags]

commands:
  train   --config FILE.py[:arg] --workdir DIR [--config.field=value ...] [--debug]
          Trains the config's model in DIR; the same command on an existing DIR resumes.
  exp     show [ROOT ...] | diff RUN_A RUN_B | plot RUN ... | reproduce RUN [--config.field=value ...]
          Compares, plots and reproduces run directories (`cnnjax exp -h`).
  sweep   EXPERIMENT.py [--root DIR] [--launcher local|ray|slurm] [--workers N]
          [--resources cpu=N,gpu=M] [--max-parallel N] [--seeds N]
          [--retry-failed] [--dry-run] [--config.field=value ...]
          Trains every point of an ablation in its own run directory (`cnnjax sweep -h`).
  data    convert --config FILE.py --output DIR [--config.field=value ...]
          Writes the config's data set as ArrayRecord files that stream from disk.
  viz     RUN [-o DIR] [--index N | --image PATH]    PNGs: filters, feature maps, confusion, ...
  predict RUN IMAGE ... [--top-k 3] [--json]         classifies image files
  eval    RUN [--config.data.dir=DIR]                evaluates a checkpoint on a data set

Every command that takes a config overrides its fields the same way: --config.FIELD=VALUE
(e.g. --config.optimizer.learning_rate=0.1 --config.model.conv_features='(9, 16)').
"""


def _train(args: list[str], own_process: bool = False) -> int:
  if own_process:  # From the first moment: see cnnjax.train.signals.
    from cnnjax.train import signals
    signals.install_for_process()
  if os.environ.get("CNNJAX_CPUS"):  # Before JAX starts: XLA sizes its pools to these CPUs.
    os.sched_setaffinity(0, {int(c) for c in os.environ["CNNJAX_CPUS"].split(",")})
  parser = argparse.ArgumentParser(
      prog="cnnjax train", description="Trains the config's model in --workdir; any config "
      "field can be overridden with --config.FIELD=VALUE.")
  parser.add_argument("--config", required=True, metavar="FILE.py[:arg]",
                      help="config file (get_config()), e.g. configs/mnist.py")
  parser.add_argument("--workdir", required=True, help="run directory: records, metrics, "
                      "checkpoints; an existing one resumes")
  parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
  debug = "--debug" in args
  try:
    flags, extra = parser.parse_known_args(args)
    config = config_lib.load(flags.config, config_lib.command_line_overrides(extra))
  except SystemExit as e:  # argparse printed the usage error.
    return 2 if e.code else 0
  except Exception as e:  # A bad override, or a config file that fails to load.
    return _fail(f"cnnjax train: error: {_last_line(e)}", debug, code=2)
  return _run_training(config, flags.workdir, debug)


def _run_training(config, workdir: str, debug: bool) -> int:
  from cnnjax.errors import CheckpointError, CnnjaxError, TrainingError
  from cnnjax.train.loop import EXIT_INTERRUPTED, Interrupted, train_and_evaluate

  try:
    summary = train_and_evaluate(config, workdir)
  except Interrupted as e:
    print(f"cnnjax train: interrupted: {e}", file=sys.stderr)
    return EXIT_INTERRUPTED
  except (TrainingError, CheckpointError) as e:
    return _fail(f"cnnjax train: failed: {e}", debug, code=1)
  except CnnjaxError as e:
    return _fail(f"cnnjax train: error: {e}", debug, code=2)
  print(f"finished: test accuracy {summary['test_accuracy']:.4f} after {summary['epochs']} "
        f"epochs (model of epoch {summary['selected_epoch']}); {workdir}")
  return 0


def _last_line(e: BaseException) -> str:
  lines = [l for l in str(e).strip().splitlines() if l.strip()]
  return lines[-1].strip() if lines else type(e).__name__


def _fail(message: str, debug: bool, code: int) -> int:
  if debug:
    traceback.print_exc()
  print(message, file=sys.stderr)
  return code


def main(argv: list[str] | None = None, own_process: bool = False) -> int:
  """Runs a cnnjax command; `own_process`: this process is that command's alone (the
  `cnnjax` executable), so `train` may keep signal handlers for the process's life."""
  args = sys.argv[1:] if argv is None else argv
  if not args or args[0] in ("-h", "--help", "help"):
    print(USAGE)
    return 0
  if args[0] == "train":
    return _train(args[1:], own_process)
  if args[0] in ("exp", "sweep", "data", "viz", "predict", "eval"):
    from cnnjax import commands
    return commands.main(args)
  print(f"cnnjax: unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
  return 2


def entry() -> None:
  """The `cnnjax` executable (and `python -m cnnjax`)."""
  sys.exit(main(own_process=True))


if __name__ == "__main__":
  entry()
