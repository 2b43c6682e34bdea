"""One SLURM job array per sweep, through submitit: a task per point, at most
`max_parallel` at once, each with its partition, time limit, CPUs and GPUs.

Before a time limit SLURM sends SIGUSR2 (submitit asks for it `signal_delay_s` ahead) to
the job's processes: the training process checkpoints and stops, submitit requeues the
task, and the task's next start resumes from the checkpoint. A preempted task is
requeued by SLURM itself, after SIGTERM, which the training process also checkpoints on.
Which tasks are still queued or running comes from `squeue`; how each ended, from its run
directory (`sacct` needs slurmdbd, which many clusters and scripts/slurm-local lack).
"""
from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import submitit

from cnnjax.exp import point
from cnnjax.runs import records


SQUEUE_SECONDS = 3.0  # Between two squeue calls: a busy controller should not be polled hard.


class PointJob(submitit.helpers.Checkpointable):
  """What a SLURM task runs: the point's `cnnjax train` process, restarted after a requeue
  (the process resumes from its run directory)."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self._process: point.PointProcess | None = None

  def __call__(self) -> int:
    self._process = point.PointProcess(self.workdir)
    return self._process.run()

  def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
    if self._process is not None:
      self._process.stop()  # Checkpoints and exits before the task is requeued.
    return submitit.helpers.DelayedSubmission(PointJob(self.workdir))


class SlurmLauncher:
  def __init__(self, folder: Path, cpu: int = 1, gpu: int = 0, max_parallel: int | None = None,
               partition: str | None = None, time: int | None = None):
    self._executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=10)
    parameters = {"cpus_per_task": max(1, int(cpu)), "job_name": "cnnjax-sweep",
                  "signal_delay_s": 120}
    if gpu:
      parameters["gpus_per_node"] = int(gpu)
    if max_parallel:
      parameters["array_parallelism"] = max_parallel
    if partition:
      parameters["partition"] = partition
    if time:
      parameters["time"] = int(time)  # Minutes.
    self._executor.update_parameters(**parameters)
    self._jobs: dict[Path, submitit.Job] = {}
    self._ended: dict[Path, str | None] = {}
    self._asked = -math.inf

  def start(self, workdirs: list[Path]) -> None:
    """One job array for these points (a sweep's, or a halving rung's: each start forgets
    the last)."""
    self._jobs, self._ended, self._asked = {}, {}, -math.inf
    if not workdirs:
      return
    with self._executor.batch():
      jobs = [self._executor.submit(PointJob(str(w))) for w in workdirs]
    self._jobs = dict(zip(workdirs, jobs))
    for workdir, job in self._jobs.items():  # Where to look for the task, by hand.
      records.write_json(workdir / "launch.json", {
          "launcher": "slurm", "slurm_job_id": job.job_id, "submitit_log": str(job.paths.stdout)})

  def ended(self) -> dict[Path, str | None]:
    """The tasks no longer in the queue (squeue, asked at most every SQUEUE_SECONDS)."""
    if self._jobs and time.monotonic() - self._asked >= SQUEUE_SECONDS:
      self._asked = time.monotonic()
      queued = self._queued()
      if queued is not None:
        self._ended = {w: None for w, job in self._jobs.items() if job.job_id not in queued}
    return dict(self._ended)

  def _queued(self) -> set[str] | None:
    """Job ids of this sweep's tasks still queued or running; None if squeue failed."""
    array = {job.job_id.split("_")[0] for job in self._jobs.values()}
    out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i", "--jobs",
                          ",".join(sorted(array))], capture_output=True, text=True)
    if out.returncode:
      if "Invalid job id" not in out.stderr:  # Any other error: ask again later.
        return None
      out.stdout = ""  # The whole array has left the queue.
    queued = set(out.stdout.split())
    for job_id in list(queued):  # A pending array prints as 123_[4-7%2].
      if "[" in job_id:
        base, ranges = job_id.rstrip("]").split("_[")
        for part in ranges.split("%")[0].split(","):
          low, _, high = part.partition("-")
          queued.update(f"{base}_{i}" for i in range(int(low), int(high or low) + 1))
    return queued

  def close(self) -> None:
    """Cancels the tasks still queued or running (when the sweep command itself stops):
    SLURM's SIGTERM makes a running point checkpoint; the next sweep resumes it."""
    left = [job.job_id for w, job in self._jobs.items() if w not in self._ended]
    if left:
      subprocess.run(["scancel", *left], capture_output=True)
