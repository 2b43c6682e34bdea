"""The `cnnjax` command (also `python -m cnnjax`).

  cnnjax train --config configs/mnist.py --workdir runs/x [--config.a.b=value ...]

Errors a user can fix (config, data, workdir) print one line and exit 2; --debug adds
the traceback. A run stopped by SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 exits 3 after saving a
checkpoint.
CNNJAX_CPUS=0,1 pins the training process to those CPUs (what `cnnjax sweep` gives each
worker).
"""
from __future__ import annotations

import os
import sys
import traceback

import ml_collections

from cnnjax import config as config_lib

USAGE = """usage: cnnjax COMMAND [flags]

commands:
  train   --config FILE.py[:arg] --workdir DIR [--config.field=value ...] [--debug]
          Trains the config's model in DIR; the same command on an existing DIR resumes.
  exp     show [ROOT ...] | diff RUN_A RUN_B | plot RUN ... | reproduce RUN
          Compares, plots and reproduces run directories (`cnnjax exp -h`).
  sweep   EXPERIMENT.py [--root DIR] [--launcher local|ray|slurm] [--workers N]
          [--resources cpu=N,gpu=M] [--max-parallel N] [--seeds N] [--set F=V]
          [--retry-failed] [--dry-run]
          Trains every point of an ablation in its own run directory (`cnnjax sweep -h`).
  data    convert --config FILE.py --output DIR [--set F=V]
          Writes the config's data set as ArrayRecord files that stream from disk.
  viz     RUN [-o DIR] [--index N | --image PATH]    PNGs: filters, feature maps, confusion, ...
  predict RUN IMAGE ... [--top-k 3] [--json]         classifies image files
  eval    RUN [--config.data.dir=DIR]                evaluates a checkpoint on a data set
"""


def _train(args: list[str]) -> int:
  if os.environ.get("CNNJAX_CPUS"):  # Before JAX starts: XLA sizes its pools to these CPUs.
    os.sched_setaffinity(0, {int(c) for c in os.environ["CNNJAX_CPUS"].split(",")})
  from absl import flags
  from ml_collections import config_flags

  fv = flags.FlagValues()
  argv = ["cnnjax train", *args]
  config_flags.DEFINE_config_file("config", None, "Config file (get_config()), e.g. "
                                  "configs/mnist.py.", flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  flags.DEFINE_string("workdir", None, "Run directory: records, metrics, checkpoints.",
                      flag_values=fv)
  flags.DEFINE_bool("debug", False, "Show tracebacks of errors.", flag_values=fv)
  debug = "--debug" in args
  try:
    fv(argv)
    if fv.config is None:
      raise flags.Error("--config is required, e.g. --config configs/mnist_talk.py")
    if not fv.workdir:
      raise flags.Error("--workdir is required, e.g. --workdir runs/talk")
    config = fv.config
    config_lib.validate(config)  # Also surfaces a config file that failed to load.
  except Exception as e:  # absl reports bad flags and bad config files in several types.
    message = _unknown_override(args) or _last_line(e)
    return _fail(f"cnnjax train: error: {message}", debug, code=2)
  return _run_training(config, fv.workdir, debug)


def _unknown_override(args: list[str]) -> str | None:
  """'config.a.b: unknown field ...' for the first --config.a.b naming no field."""
  import difflib
  specs = [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
  specs += [b for a, b in zip(args, args[1:]) if a == "--config"]
  try:
    config = config_lib.load(specs[-1])
  except Exception:
    return None
  for arg in args:
    if not arg.startswith("--config."):
      continue
    field = arg[len("--config."):].split("=", 1)[0]
    node = config
    for part in field.split("."):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        options = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
        close = difflib.get_close_matches(part, options, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"config.{field}: unknown field{hint}"
      node = node[part]
  return None


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


def main(argv: list[str] | None = None) -> int:
  args = sys.argv[1:] if argv is None else argv
  if not args or args[0] in ("-h", "--help", "help"):
    print(USAGE)
    return 0
  if args[0] == "train":
    return _train(args[1:])
  if args[0] in ("exp", "sweep", "data", "viz", "predict", "eval"):
    from cnnjax import commands
    return commands.main(args)
  print(f"cnnjax: unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
