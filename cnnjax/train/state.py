"""The TrainState: parameters, optimizer state, BatchNorm statistics and the run's key."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import struct
from flax.training import train_state


class TrainState(train_state.TrainState):
  batch_stats: Any  # BatchNorm running statistics ({} for models without BatchNorm).
  rng: jax.Array  # Base key of dropout and augmentation; each step folds in its number.
  # The moving average of {"params", "batch_stats"} (config.optimizer.ema_decay); {} = off.
  ema: Any = struct.field(default_factory=dict)


def with_ema(state: TrainState) -> TrainState:
  """`state` whose moving average starts at its parameters and statistics."""
  # Copies: buffers of their own, since the train step donates the whole state (one
  # buffer in two of its leaves would be donated twice).
  own = lambda tree: jax.tree.map(lambda x: jnp.array(x, copy=True), tree)
  return state.replace(ema={"params": own(state.params), "batch_stats": own(state.batch_stats)})


def _create_fn(model: nn.Module, input_shape, tx: optax.GradientTransformation, ema: bool):
  def create(seed):
    init_key, run_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = model.init(init_key, jnp.zeros((1, *input_shape), jnp.float32), train=False)
    state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                              batch_stats=variables.get("batch_stats", {}), rng=run_key)
    return with_ema(state) if ema else state
  return create


def create_train_state(model: nn.Module, input_shape, tx: optax.GradientTransformation,
                       seed: int) -> TrainState:
  """Initial state on the default device; `seed` fixes both init and the run's key. Its
  moving average, if any, is added with `with_ema` (after a run's initial weights are
  in place)."""
  # One compilation instead of one per op run eagerly, and without XLA's optimizations:
  # this runs once, and optimizing its random number code is slow on a CPU
  # (docs/performance.md); the values agree with the optimized build up to rounding
  # (tests/test_train.py).
  create = _create_fn(model, input_shape, tx, ema=False)
  compiled = jax.jit(create).lower(seed).compile({"xla_backend_optimization_level": 0})
  return compiled(seed)


def train_state_shapes(model: nn.Module, input_shape, tx: optax.GradientTransformation,
                       ema: bool = False) -> TrainState:
  """The state `create_train_state` makes, as shapes and dtypes (jax.ShapeDtypeStruct
  leaves): traced, nothing computed or compiled."""
  return jax.eval_shape(_create_fn(model, input_shape, tx, ema), 0)
