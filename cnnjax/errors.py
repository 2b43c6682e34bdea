"""Errors a user can act on: the command line prints them as one line, no traceback."""

EXIT_INTERRUPTED = 3  # `cnnjax train` saved a checkpoint and stopped on a signal.


class CnnjaxError(Exception):
  """Base class of the errors cnnjax reports to a user without a traceback."""


class ConfigError(CnnjaxError):
  """A config field holds a value that cannot work; the message names the field."""

  def __init__(self, field: str, message: str):
    self.field = field
    super().__init__(f"config.{field}: {message}")


class UsageError(CnnjaxError):
  """A command line or a call that cannot work (an unknown argument, a missing file)."""


class DataError(CnnjaxError):
  """A data set is missing or malformed; the message names the file or folder."""


class WorkdirError(CnnjaxError):
  """The run directory cannot be used (held by another process, other config, ...)."""


class TrainingError(CnnjaxError):
  """Training stopped on a numerical fault (NaN or infinite loss)."""


class CheckpointError(CnnjaxError):
  """A checkpoint could not be written or does not fit the model; earlier ones are intact."""
