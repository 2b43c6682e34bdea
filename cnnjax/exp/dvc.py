"""`cnnjax dvc init`: a DVC pipeline stage that trains a config, so that `dvc exp run -S`
and `dvc exp show` work on cnnjax runs.

The stage runs `cnnjax train --params params.yaml`: its params are the config's fields,
written to params.yaml at their current values; its deps the config file, cnnjax's code,
the user's own model or data source module, and the data it reads; its output the run
directory; its metrics and plots the files DVCLive writes from the run (the run's final
figures and its per-epoch metrics). DVC itself writes the stage (`dvc stage add`).
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

import cnnjax
from cnnjax import config as config_lib
from cnnjax import data, models
from cnnjax.errors import UsageError


PARAMS = "params.yaml"  # The file `dvc exp run -S FIELD=VALUE` edits.


def init(config_spec: str, overrides: dict[str, Any] | None = None, stage: str = "train",
         workdir: str | None = None, live: str = "dvclive", force: bool = False) -> list[str]:
  """Writes params.yaml and the stage `stage` of dvc.yaml in the current folder, which
  must be inside a git repository with DVC; returns what to run next. `force` replaces
  an existing params.yaml and stage."""
  here, params = Path.cwd(), PARAMS
  _check_repository(here)
  if not force:
    _check_free(here, stage, params)
  workdir = workdir or f"runs/{stage}"
  config = config_lib.load(config_spec, overrides)
  config_lib.validate(config)
  folder, pinned = _data_folder(config), _pinned_dir(config)
  values = params_values(config, pinned and _path(Path(pinned), here))
  with open(here / params, "w") as f:
    yaml.safe_dump(values, f, sort_keys=False)
  command = ["cnnjax", "train", "--config", config_spec, "--params", params,
             "--workdir", workdir, f"--config.dvclive={live}"]
  deps = [config_spec.partition(":")[0], *_code(config), *([folder] if folder else [])]
  add = [sys.executable, "-m", "dvc", "stage", "add", "--name", stage, *(["--force"] * force),
         *[a for d in deps for a in ("--deps", _path(Path(d), here))],
         "--params", f"{params}:", "--outs", workdir,
         "--metrics-no-cache", f"{live}/metrics.json", "--plots-no-cache", f"{live}/plots/metrics",
         shlex.join(command)]
  result = subprocess.run(add, capture_output=True, text=True)
  if result.returncode:
    lines = (result.stderr or result.stdout).strip().splitlines()
    raise UsageError(f"dvc stage add failed: {lines[-1] if lines else result.returncode}")
  return [f"wrote {params} (the config's fields) and stage {stage!r} of dvc.yaml: "
          f"{shlex.join(command)}",
          f"next: git add dvc.yaml {params} && git commit -m 'cnnjax stage {stage}'",
          "then: dvc exp run; dvc exp run -S 'optimizer.learning_rate=0.1'; dvc exp show"]


def params_values(config, data_dir: str | None = None) -> dict[str, Any]:
  """params.yaml's contents: the config's fields (lists for tuples) but config.dvclive,
  which the stage's command sets; `data_dir` pinned, so that the stage trains on the
  folder it depends on."""
  values = config_lib.to_dict(config)
  del values["dvclive"]
  if data_dir:
    values["data"]["dir"] = data_dir
  return values


def _check_repository(here: Path) -> None:
  """`dvc exp run` needs DVC installed, a DVC repository and git."""
  if importlib.util.find_spec("dvc") is None or importlib.util.find_spec("dvclive") is None:
    raise UsageError("needs DVC and DVCLive: pip install -e '.[dvc]'")
  folders = (here, *here.parents)
  if not any((f / ".dvc").is_dir() for f in folders):
    raise UsageError(f"{here} is not inside a DVC repository: run `git init && dvc init` there "
                     f"first")
  if not any((f / ".git").exists() for f in folders):
    raise UsageError(f"{here} is in a DVC repository without git, which `dvc exp run` needs: "
                     f"run `git init` there first")


def _check_free(here: Path, stage: str, params: str) -> None:
  if (here / params).exists():
    raise UsageError(f"{here / params} exists: --force replaces it with the config's fields")
  pipeline = here / "dvc.yaml"
  stages = (yaml.safe_load(pipeline.read_text()) or {}).get("stages", {}) if pipeline.exists() else {}
  if stage in stages:
    raise UsageError(f"{pipeline} has a stage {stage!r}: --force replaces it, or pass --stage NAME")


def _data_folder(config) -> Path | None:
  """What the data source reads, as its run records it (a folder or a file), if a path:
  loading it also stops a stage that could not train before it is written."""
  location = data.load(config.data, config.seed).location  # e.g. "/data/mnist", "folder:/x"
  for text in (location, location.partition(":")[2], location.rpartition("@")[2]):
    if text and Path(text).exists():
      return Path(text).resolve()
  return None


def _pinned_dir(config) -> str | None:
  """The data folder the stage must read wherever it runs: config.data.dir, else
  $CNNJAX_DATA_DIR as it is now (None for a source without a folder, or neither set)."""
  if "dir" not in config.data:
    return None
  return config.data.dir or os.environ.get(data.ENV_DATA_DIR) or None


def _code(config) -> list[Path]:
  """cnnjax's package folder, and the files of a model or data source named outside it."""
  package = Path(cnnjax.__file__).parent
  files = [Path(inspect.getsourcefile(c)).resolve()
           for c in (models.model_class(config.model.name), data.source_class(config.data.source))]
  return [package, *[f for f in files if package not in f.parents]]


def _path(path: Path, here: Path) -> str:
  """`path` relative to `here` when it lies inside, else absolute."""
  path = path.resolve()
  return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)
