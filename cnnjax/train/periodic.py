"""When the training loop evaluates, checkpoints and prints progress: decided here.

As in big_vision (`utils.steps`, `utils.itstime`), the config's durations are turned
into steps once (`Periods`), and `itstime` answers "now?" for a step; the loop body is a
list of `if itstime(...)` blocks. Progress lines go by the clock (`ProgressLine`).
CLU's `periodic_actions.ReportProgress` would time them, but importing that module
imports CLU's metric writers and with them TensorFlow, which cnnjax does not install.
"""
from __future__ import annotations

import dataclasses
import time

import jax


@dataclasses.dataclass(frozen=True)
class Periods:
  """A run's length and how often it evaluates and checkpoints, all in steps."""
  steps_per_epoch: int
  total_steps: int
  eval_every: int  # config.eval_every_epochs
  checkpoint_every: int  # config.checkpoint.every_epochs, counted at evaluations only

  @classmethod
  def from_config(cls, config, steps_per_epoch: int) -> Periods:
    return cls(steps_per_epoch, steps_per_epoch * config.num_epochs,
               steps_per_epoch * config.eval_every_epochs,
               steps_per_epoch * config.checkpoint.every_epochs)


def itstime(step: int, every: int, total: int) -> bool:
  """True every `every` steps (0: never) and at the last step, `total`."""
  return (every > 0 and step % every == 0) or step == total


class ProgressLine:
  """Prints `epoch 2/10  step 40/100  1,234 img/s  eta 56s` at most every `seconds`
  (0: never); the rate is over the steps since the last line or `restart`."""

  def __init__(self, seconds: float, periods: Periods, batch_size: int):
    self.seconds, self.periods, self.batch_size = seconds, periods, batch_size
    self.restart(0)

  def restart(self, step: int) -> None:
    """Counts the rate from now and `step` (the loop restarts it at each epoch)."""
    self._since, self._since_step = time.time(), step

  def __call__(self, step: int) -> None:
    """After step `step` (1-based) of the run."""
    if not self.seconds or time.time() - self._since < self.seconds:
      return
    rate = (step - self._since_step) * self.batch_size / (time.time() - self._since)
    spe, total = self.periods.steps_per_epoch, self.periods.total_steps
    epoch = (step - 1) // spe
    eta = (total - step) * self.batch_size / rate if rate > 0 else float("nan")
    print(f"epoch {epoch + 1}/{total // spe}  step {step - epoch * spe}/{spe}  "
          f"{rate:,.0f} img/s  eta {eta:.0f}s", flush=True)
    self.restart(step)


class Profile:
  """A jax.profiler trace of `num_steps` steps after the first `start_step`
  (config.profile) in `directory`, where TensorBoard's profile plugin reads it; what
  CLU's periodic_actions.Profile does, without the TensorFlow that module imports. With
  0 steps it does nothing."""

  def __init__(self, profile_config, directory):
    self.start, self.num_steps = profile_config.start_step, profile_config.num_steps
    self.directory, self.tracing = directory, False

  def __call__(self, step: int, pending) -> None:
    """After `step` steps of the run; `pending` holds the outputs of the last one."""
    if not self.num_steps:
      return
    if step == self.start and not self.tracing:
      jax.block_until_ready(pending)  # The steps before stay out of the trace.
      jax.profiler.start_trace(str(self.directory))
      self.tracing = True
    elif self.tracing and step == self.start + self.num_steps:
      self.close(pending)

  def close(self, pending=None) -> None:
    """Ends a trace under way (at its last step, or when the run stops inside it)."""
    if self.tracing:
      jax.block_until_ready(pending)
      jax.profiler.stop_trace()
      self.tracing = False
