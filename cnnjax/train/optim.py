"""The optax optimizer and learning-rate schedule that `config.optimizer` names."""
from __future__ import annotations

import optax

from cnnjax import tree_paths


def learning_rate_schedule(o, steps_per_epoch: int, num_epochs: int) -> optax.Schedule:
  total = steps_per_epoch * num_epochs
  lr = o.learning_rate
  if o.schedule == "onecycle":  # warmup_epochs is the fraction of training spent rising.
    return optax.cosine_onecycle_schedule(total, lr, pct_start=o.warmup_epochs)
  warmup = int(round(o.warmup_epochs * steps_per_epoch))
  if o.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total, end_value=0.0)
  if warmup:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
  return optax.constant_schedule(lr)


def create_optimizer(o, steps_per_epoch: int, num_epochs: int):
  """(optax transformation, schedule) for optimizer config `o`."""
  schedule = learning_rate_schedule(o, steps_per_epoch, num_epochs)
  if o.name == "adamw":
    opt = optax.adamw(schedule, b1=o.b1, b2=o.b2, weight_decay=o.weight_decay)
  else:
    if o.name == "adam":
      opt = optax.adam(schedule, b1=o.b1, b2=o.b2)
    else:
      opt = optax.sgd(schedule, momentum=o.momentum or None, nesterov=o.nesterov)
    if o.weight_decay:  # Classic L2: added to the gradient before the update rule.
      opt = optax.chain(optax.add_decayed_weights(o.weight_decay), opt)
  if o.grad_clip_norm:
    opt = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), opt)
  if o.frozen:  # No update at all: the parameters stay bit for bit what they were.
    opt = optax.multi_transform(
        {"trained": opt, "frozen": optax.set_to_zero()},
        lambda params: tree_paths.labels(params, o.frozen, "frozen", "trained"))
  return opt, schedule
