"""A config file that loads a saved config: `--config PATH/saved_config.py:RUN/config.json`
trains exactly the config a JSON file records (a run directory's config.json, or the
point files `cnnjax sweep` writes), through the public `cnnjax train` command."""
import json
from pathlib import Path

from cnnjax import config as config_lib


def spec(json_path) -> str:
  """The `--config` value that loads `json_path`."""
  return f"{Path(__file__).resolve()}:{Path(json_path).resolve()}"


def get_config(json_path: str):
  return config_lib.from_dict(json.loads(Path(json_path).read_text()))
