"""The training loop: from a config and a run directory to a finished, recorded run.

`train_and_evaluate(config, workdir)` validates the config, loads data, builds the
model, then trains epoch by epoch with periodic evaluation and checkpoints. Running it
again on the same workdir resumes from the latest checkpoint (mid-epoch included) and
ends with the same parameters and metrics as an uninterrupted run.

Everything decided during training (the curves, the checkpoint kept as the delivered
model by config.checkpoint.select) uses the validation split and the training metrics;
the test set is evaluated once the run ends, for the delivered model and for the last
parameters (and at each evaluation only with config.test_curves, which nothing reads).
"""
from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from cnnjax import config as config_lib
from cnnjax import data, models, runtime, signals, tree_paths
from cnnjax.data import pipeline
from cnnjax.errors import ConfigError, TrainingError, WorkdirError
from cnnjax.runs import records
from cnnjax.runs.checkpoints import Checkpoints
from cnnjax.runs.failpoints import pause_point
from cnnjax.train import distributed, parallel, periodic, runlog, steps, transfer
from cnnjax.train.optim import create_optimizer
from cnnjax.train.state import create_train_state, train_state_shapes, with_ema



class Interrupted(Exception):
  """SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 arrived; the run saved a checkpoint and stopped."""


# One compilation each, where running eagerly compiles every op on its first use.
_compute = jax.jit(lambda metrics: metrics.compute())


def _eval_batch_size(dmap: parallel.DeviceMap, batch_size: int) -> int:
  """config.data.eval_batch_size rounded up to a multiple of the devices (the padding is
  masked out)."""
  return parallel.padded_batch_size(batch_size, dmap.global_n, pad=True)


def evaluate(dmap: parallel.DeviceMap, rstate, images, labels, batch_size: int,
             split: str = "test") -> dict:
  """`{split}_loss` and `{split}_accuracy` over every example exactly once (padding is
  masked out), and `{split}_examples`."""
  total = dmap.eval_metrics()
  global_batch = _eval_batch_size(dmap, batch_size)
  share = distributed.process_slice(global_batch)  # The only examples this process reads.
  for batch in pipeline.eval_batches(images, labels, global_batch, share):
    total = dmap.eval_step(rstate, total, dmap.split(batch))
    pause_point("eval")
  total = dmap.unreplicate(dmap.eval_total(total))
  values = _compute(total)
  return {f"{split}_loss": float(values["loss"]), f"{split}_accuracy": float(values["accuracy"]),
          f"{split}_examples": int(total.accuracy.count)}


def train_and_evaluate(config, workdir: str | Path,
                       origins: dict[str, str] | None = None) -> dict[str, Any]:
  """Trains `config` in `workdir` (resuming what is there) and returns its summary.
  `origins` ({field: "command line" or a params file}) says where the overrides of the
  config file's values came from, for run.json."""
  wall_start = time.time()
  config_lib.validate(config)
  cpu_origin = runtime.use_cpu_devices(config.cpu_devices)  # Both before JAX picks devices.
  runtime.use_compilation_cache()
  distributed.initialize(config)
  workdir = Path(workdir)
  lock = records.Lock(workdir)
  try:
    if distributed.is_writer():
      lock.acquire()
    try:
      return _train(config, workdir, wall_start, cpu_origin, origins or {})
    finally:
      lock.release()
  except OSError as e:  # Unwritable, read-only or full: say where, not a traceback.
    raise WorkdirError(f"cannot write run directory {workdir}: {e.strerror or e}") from e


@dataclasses.dataclass(frozen=True)
class _Run:
  """What a run trains on and how, fixed before its first step."""
  config: Any
  devices: list
  dataset: Any
  model: Any
  rule: str  # config.checkpoint.select, resolved
  batch_size: int
  padded_batch: int  # The batch the devices get (config.pad_batch)
  periods: periodic.Periods
  allocator: str  # What config.keep_freed_memory did (session.json)
  initial: transfer.Initial | None  # What config.init starts the model from


def _train(config, workdir: Path, wall_start: float, cpu_origin: str,
           origins: dict[str, str]) -> dict[str, Any]:
  run = prepare(config, cpu_origin, workdir)
  tx, lr_schedule = create_optimizer(config.optimizer, run.periods.steps_per_epoch,
                                     config.num_epochs)
  dmap = parallel.DeviceMap(config.parallel, run.devices, config, run.dataset.num_classes)
  _compile_ahead(run, dmap, tx)
  try:
    return _session(run, dmap, tx, lr_schedule, workdir, wall_start, cpu_origin, origins)
  finally:
    dmap.finish_compiling()  # Python aborts at exit with that thread still in XLA.


def _session(run: _Run, dmap, tx, lr_schedule, workdir: Path, wall_start: float, cpu_origin: str,
             origins: dict[str, str]) -> dict[str, Any]:
  """This session of the run: its records, the state to start from, the epochs left."""
  config = run.config
  if distributed.is_writer():
    _write_records(run, workdir, cpu_origin, origins)
  ckpts = Checkpoints(workdir, config.checkpoint.keep)
  state, epoch_metrics = _restore(run, tx, ckpts)
  log = runlog.RunLog(run, workdir, state, wall_start)
  if log.selected_step() == log.step != ckpts.selected_step():
    # The session before was killed between the latest and the selected write of `step`.
    ckpts.save(log.step, {"state": state, "epoch_metrics": epoch_metrics}, selected=True,
               latest=False)
  if log.step:
    print(f"resuming {workdir} at step {log.step}/{run.periods.total_steps}", flush=True)
  status, error = "failed", None
  profile = periodic.Profile(config.profile, workdir / "profile")
  try:
    with signals.stop_signals() as stop:
      rstate, step = _epochs(run, dmap, state, epoch_metrics, stop, ckpts, log,
                             jax.jit(lr_schedule), profile)
      if step < run.periods.total_steps and "stopped_early" not in log.summary:
        status = _pause(run, log, step)
      else:
        log.summary.update(log.metrics(), **_test_results(dmap, rstate, ckpts, run.dataset, config))
        print(f"test accuracy {log.summary['test_accuracy']:.4f} (model of epoch "
              f"{log.summary['selected_epoch']}, chosen by {run.rule}); last parameters "
              f"{log.summary['final_test_accuracy']:.4f}", flush=True)
        status = "finished"
  except Interrupted as e:
    status, error = "interrupted", str(e)
    pause_point("stopped")  # Checkpoint saved, "interrupted" not yet recorded.
    raise
  except KeyboardInterrupt:  # A second SIGINT, in a process that kept Python's handler.
    status, error = "interrupted", (f"KeyboardInterrupt: stopped at once; the same command "
                                    f"resumes from the latest checkpoint (step "
                                    f"{ckpts.latest_step()})")
    raise
  except BaseException as e:
    error = f"{type(e).__name__}: {e}"
    raise
  finally:
    profile.close()
    ckpts.close()
    log.close(status, error)
  return log.summary


def _epochs(run: _Run, dmap, state, epoch_metrics, stop: signals.StopSignals, ckpts: Checkpoints,
            log: runlog.RunLog, lr_schedule, profile: periodic.Profile):
  """The epochs from the state's step to the end (or to config.pause_at_epoch): steps,
  evaluations, checkpoints. Returns the replicated state and its step; on a stop signal
  saves a checkpoint and raises Interrupted."""
  periods, step = run.periods, log.step
  rstate, rmetrics = dmap.replicate(state), dmap.replicate(epoch_metrics)
  progress = periodic.ProgressLine(run.config.log_every_seconds, periods, run.batch_size)
  profile(step, rmetrics)
  last_epoch = run.config.pause_at_epoch or run.config.num_epochs
  for epoch in range(step // periods.steps_per_epoch, last_epoch):
    if log.early_stop():  # Decided before a kill; nothing more to train.
      break
    epoch_start, epoch_start_step = time.time(), step
    rstate, rmetrics, step = _train_epoch(run, dmap, rstate, rmetrics, epoch, step, stop,
                                          progress, profile, ckpts, log.summary, log.clock)
    if periodic.itstime(step, periods.eval_every, periods.total_steps):
      record = _evaluation_record(run, dmap, rstate, rmetrics, step, epoch_start,
                                  epoch_start_step, lr_schedule, ckpts, log.clock)
      is_selected = log.epoch(record)
      rmetrics = dmap.replicate(steps.TrainMetrics.empty())
      # The session's last checkpoint, then: the run ends early or pauses.
      stopping = log.early_stop() is not None or epoch + 1 == last_epoch
      if is_selected or stopping or periodic.itstime(step, periods.checkpoint_every,
                                                     periods.total_steps):
        ckpts.save(step, dmap.unreplicate({"state": rstate, "epoch_metrics": rmetrics}),
                   selected=is_selected)
        pause_point("checkpoint")
    else:  # Train metrics keep accumulating until the next evaluation.
      log.clock.train += time.time() - epoch_start
    if stop.received:  # Seen at the epoch's last step: stopped after its evaluation.
      _interrupt(dmap, rstate, rmetrics, step, ckpts, stop)
  reason = log.early_stop() if step < periods.total_steps else None
  if reason:
    log.summary["stopped_early"] = reason
    print(reason, flush=True)
  return rstate, step


def _pause(run: _Run, log: runlog.RunLog, step: int) -> str:
  """Ends a session at config.pause_at_epoch (or past it, when it was lowered): no test
  evaluation; the next session with a later pause, or none, goes on from this checkpoint."""
  epoch = step // run.periods.steps_per_epoch
  log.summary.update(log.metrics(), paused_at_epoch=epoch)
  print(f"paused at epoch {epoch}/{run.config.num_epochs} (config.pause_at_epoch="
        f"{run.config.pause_at_epoch}): raise or clear it and run the same command to go on",
        flush=True)
  return "paused"


def prepare(config, cpu_origin: str, workdir: Path | None = None) -> _Run:
  """Checks what the config asks of the devices and data, and builds the model (and
  reads what config.init starts it from, unless `workdir` holds a checkpoint to resume):
  what training and `cnnjax plan` start from."""
  if jax.process_count() > 1 and config.num_devices:
    raise ConfigError("num_devices", "must be 0 (all local devices) with several processes")
  devices = parallel.select_devices(config.num_devices, cpu_origin)
  allocator = runtime.apply_keep_freed_memory(config, devices)
  dataset = data.load(config.data, config.seed)
  rule = config_lib.select_rule(config)
  if (config.data.augment_rotate or config.data.augment_scale) and len(dataset.input_shape) != 3:
    raise ConfigError("data.augment_rotate" if config.data.augment_rotate else "data.augment_scale",
                      f"rotation and scaling take 2-D images; {dataset.location} holds inputs "
                      f"of shape {dataset.input_shape}")
  batch_size = pipeline.batch_size(config.batch_size, config.max_batch_fraction,
                                   len(dataset.train_labels))
  padded_batch = parallel.padded_batch_size(batch_size, len(devices) * jax.process_count(),
                                            config.pad_batch)
  model = models.build(config.model, dataset.num_classes, dataset.input_shape, parallel.AXIS)
  if config.pad_batch and not models.takes_mask(model):
    raise ConfigError("pad_batch", f"model {config.model.name!r} takes no mask (its __call__ has "
                      f"no `mask` argument) for the padding of its batch statistics")
  spe = pipeline.steps_per_epoch(len(dataset.train_labels), batch_size)
  if not spe:
    raise ConfigError("batch_size", f"{batch_size} is more than the {len(dataset.train_labels)} "
                      f"training examples of {dataset.location}: no batch to train on")
  periods = periodic.Periods.from_config(config, spe)
  fresh = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *dataset.input_shape)),
                                            train=False))
  _check_techniques(config, dataset, fresh, padded_batch // (len(devices) * jax.process_count()),
                    periods)
  resuming = workdir is not None and any(p.name.isdigit() for p in (workdir / "checkpoints").glob("*"))
  initial = None if resuming else transfer.load(config.init, fresh)
  return _Run(config, devices, dataset, model, rule, batch_size, padded_batch, periods,
              allocator, initial)


def _check_techniques(config, dataset, fresh: dict, device_batch: int,
                      periods: periodic.Periods) -> None:
  """ConfigErrors of the fields that need the model's variables, the data's shape or the
  run's length: accumulation, mixing, frozen parameters, the profile window."""
  k = config.accumulate_steps
  if k > 1:
    if fresh.get("batch_stats"):
      raise ConfigError("accumulate_steps", f"model {config.model.name!r} has BatchNorm, whose "
                        f"statistics over a micro-batch are not those of the batch: the update "
                        f"would differ from the batch's; use a model without BatchNorm or a "
                        f"smaller config.batch_size")
    if device_batch % k:
      raise ConfigError("accumulate_steps", f"{k} does not divide each device's {device_batch} "
                        f"examples of config.batch_size={config.batch_size}")
  if config.data.mixup_alpha or config.data.cutmix_alpha:
    field = "data.cutmix_alpha" if config.data.cutmix_alpha else "data.mixup_alpha"
    if config.pad_batch:
      raise ConfigError(field, "mixing takes partners from full batches; set pad_batch=False")
    if config.data.cutmix_alpha and len(dataset.input_shape) < 2:
      raise ConfigError("data.cutmix_alpha", f"CutMix cuts a box out of spatial axes; "
                        f"{dataset.location} holds examples of shape {dataset.input_shape}, "
                        f"which have none")
  tree_paths.check_patterns(fresh["params"], config.optimizer.frozen, "optimizer.frozen")
  p = config.profile
  if p.num_steps and p.start_step + p.num_steps > periods.total_steps:
    raise ConfigError("profile.start_step", f"the window of steps {p.start_step + 1} to "
                      f"{p.start_step + p.num_steps} ends past the run's {periods.total_steps} "
                      f"steps")


def first_batches(run: _Run, dmap: parallel.DeviceMap) -> tuple[dict, dict]:
  """This process's first train and eval batches: what the steps compile for."""
  dataset, config = run.dataset, run.config
  train_batch = pipeline.first_train_batch(dataset.train_images, dataset.train_labels,
                                           run.batch_size, run.padded_batch,
                                           distributed.process_slice(run.padded_batch))
  eval_size = _eval_batch_size(dmap, config.data.eval_batch_size)
  eval_batch = pipeline.first_eval_batch(dataset.test_images, dataset.test_labels, eval_size,
                                         distributed.process_slice(eval_size))
  return train_batch, eval_batch


def state_shapes(run: _Run, tx):
  """The train state of `run` as shapes (its moving average included where it keeps one)."""
  return train_state_shapes(run.model, run.dataset.input_shape, tx,
                            bool(run.config.optimizer.ema_decay))


def _compile_ahead(run: _Run, dmap: parallel.DeviceMap, tx) -> None:
  """Starts compiling the train and eval steps while the host does the rest of the set-up."""
  train_batch, eval_batch = first_batches(run, dmap)
  dmap.compile_ahead(state_shapes(run, tx), steps.TrainMetrics.empty(), train_batch, eval_batch)


def _write_records(run: _Run, workdir: Path, cpu_origin: str, origins: dict[str, str]) -> None:
  """The run's records (process 0): config, session, code diff, model summary."""
  session, diff = records.session_record(run.config.seed, run.devices)
  session.update(data=run.dataset.location, processes=jax.process_count(),
                 global_devices=len(run.devices) * jax.process_count())
  if run.devices[0].platform == "cpu":
    session["cpu_devices_set_by"] = cpu_origin
  session["malloc"] = run.allocator
  session["overrides"] = dict(sorted(origins.items()))  # Field -> where its value came from.
  if run.initial is not None:
    session["init"] = run.initial.record
  records.write_run_records(workdir, config_lib.to_dict(run.config), session, diff)
  table = models.summary(run.model, run.dataset.input_shape)
  print(table, flush=True)
  (workdir / "model_summary.txt").write_text(table)


def _restore(run: _Run, tx, ckpts: Checkpoints):
  """(state, this epoch's train metrics so far): from the latest checkpoint, or new."""
  state = create_train_state(run.model, run.dataset.input_shape, tx, run.config.seed)
  state = transfer.start(state, run.initial)
  if run.config.optimizer.ema_decay:
    state = with_ema(state)  # Starts at the weights the run starts from.
  restored = ckpts.restore_latest({"state": state, "epoch_metrics": steps.TrainMetrics.empty()})
  if restored is None:
    return state, steps.TrainMetrics.empty()
  return restored["state"], restored["epoch_metrics"]


def _train_epoch(run: _Run, dmap, rstate, rmetrics, epoch: int, step: int, stop: signals.StopSignals,
                 progress: periodic.ProgressLine, profile: periodic.Profile, ckpts: Checkpoints,
                 summary: dict, clock: runlog.Clock):
  """The steps of `epoch` from `step` on: (state, metrics accumulated, step). Sets
  summary["startup_seconds"] at this session's first step; on a stop signal before the
  epoch's last step saves a checkpoint and raises Interrupted."""
  spe = run.periods.steps_per_epoch
  progress.restart(step)
  share = distributed.process_slice(run.padded_batch)  # The only examples this process reads.
  for batch in pipeline.train_batches(run.dataset.train_images, run.dataset.train_labels,
                                      run.batch_size, run.config.seed, epoch, step % spe,
                                      padded_size=run.padded_batch, share=share):
    rstate, rmetrics = dmap.train_step(rstate, rmetrics, dmap.split(batch))
    step += 1
    if "startup_seconds" not in summary:  # Data, model, compiling, the first step.
      jax.block_until_ready(rmetrics)
      summary["startup_seconds"] = time.time() - clock.start
    pause_point("step")
    if stop.received and step % spe:  # At the epoch's end, `_train` evaluates first.
      _interrupt(dmap, rstate, rmetrics, step, ckpts, stop)
    progress(step)
    profile(step, rmetrics)
  return rstate, rmetrics, step


def _interrupt(dmap, rstate, rmetrics, step: int, ckpts: Checkpoints, stop: signals.StopSignals):
  """Saves the checkpoint of `step` (unless the loop just did) and raises Interrupted."""
  if ckpts.latest_step() != step:
    saved = dmap.unreplicate({"state": rstate, "epoch_metrics": rmetrics})
    _check_finite(_compute(saved["epoch_metrics"]), ckpts)
    ckpts.save(step, saved, selected=False)
  raise Interrupted(f"{stop.received} at step {step}: checkpoint saved; run the same "
                    f"command to resume")


def _evaluation_record(run: _Run, dmap, rstate, rmetrics, step: int, epoch_start: float,
                       epoch_start_step: int, lr_schedule, ckpts: Checkpoints,
                       clock: runlog.Clock) -> dict[str, Any]:
  """The metrics.jsonl record of an evaluation at the end of an epoch: the train metrics
  accumulated since the last one, the curve splits evaluated, the epoch's speed."""
  train = _compute(dmap.unreplicate(rmetrics))  # Waits for the epoch's steps.
  epoch_seconds = time.time() - epoch_start
  clock.train += epoch_seconds
  _check_finite(train, ckpts)
  record = {"step": step, "epoch": step // run.periods.steps_per_epoch,
            "train_loss": float(train["loss"]), "train_accuracy": float(train["accuracy"])}
  weights = [("", rstate)] + ([("ema_", _ema(rstate))] if run.config.optimizer.ema_decay else [])
  for split, images, labels in _curve_splits(run.dataset, run.config.test_curves):
    for prefix, evaluated in weights:
      result = evaluate(dmap, evaluated, images, labels, run.config.data.eval_batch_size, split)
      record.update({prefix + k: result[k] for k in (f"{split}_loss", f"{split}_accuracy")})
  record.update({
      "learning_rate": float(lr_schedule(step - 1)), "grad_norm": float(train["grad_norm"]),
      "images_per_second": (step - epoch_start_step) * run.batch_size / epoch_seconds,
      "train_seconds": clock.train,
      "wall_seconds": clock.wall(),
  })
  return record


def _ema(state):
  """`state` whose weights and statistics are its moving average's."""
  return state.replace(params=state.ema["params"], batch_stats=state.ema["batch_stats"])


def _check_finite(train_metrics: dict, ckpts: Checkpoints) -> None:
  """Stops the run at the first NaN/infinite loss or gradient, saving nothing of it."""
  bad_step = int(train_metrics["nonfinite_step"])
  if bad_step >= 0:
    raise TrainingError(f"loss or gradient became NaN or infinite at step {bad_step}; "
                        f"stopped without saving it (last good checkpoint: step "
                        f"{ckpts.latest_step()})")


def _curve_splits(dataset, test_curves: bool) -> list[tuple[str, Any, Any]]:
  """(name, images, labels) of the splits evaluated at every evaluation: the validation
  split, and the test set only when config.test_curves asks for its curves."""
  splits = [("val", dataset.val_images, dataset.val_labels)] if dataset.has_validation else []
  if test_curves:
    splits.append(("test", dataset.test_images, dataset.test_labels))
  return splits


def _test_results(dmap, rstate, ckpts: Checkpoints, dataset, config) -> dict:
  """Test loss and accuracy of the delivered (selected) model and of the last parameters
  (and of the last moving average, where the run keeps one)."""
  test = functools.partial(evaluate, dmap, images=dataset.test_images, labels=dataset.test_labels,
                           batch_size=config.data.eval_batch_size)
  final = test(rstate)
  out = {"final_test_accuracy": final["test_accuracy"], "final_test_loss": final["test_loss"]}
  if config.optimizer.ema_decay:
    final_ema = test(_ema(rstate))
    out.update(final_ema_test_accuracy=final_ema["test_accuracy"],
               final_ema_test_loss=final_ema["test_loss"])
  selected = final_ema if config_lib.delivers_ema(config) else final
  if ckpts.selected_step() != ckpts.latest_step():
    target = {"state": dmap.unreplicate(rstate), "epoch_metrics": steps.TrainMetrics.empty()}
    restored = dmap.replicate(ckpts.restore_selected(target)["state"])
    selected = test(_ema(restored) if config_lib.delivers_ema(config) else restored)
  return {"test_accuracy": selected["test_accuracy"], "test_loss": selected["test_loss"], **out,
          "selected_step": ckpts.selected_step()}
