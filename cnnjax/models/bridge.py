"""Flax NNX models in the one train step.

An `nnx.Module` runs as `Bridged`, a Linen module (Flax's `nnx.bridge.ToLinen`): its
parameters and BatchNorm statistics are the "params" and "batch_stats" collections of a
Linen model, at the module's own attribute paths (`self.conv0 = nnx.Conv(...)` is
`params["conv0"]["kernel"]`), so the TrainState, the train step, checkpoints and the
forward path are those of every model. On each call the bridge

- switches the module with `module.train()` in a train step, `module.eval()` otherwise;
- gives every `nnx.BatchNorm` that names no `axis_name` the device axis: its statistics
  are the global batch's (the mean of the devices' equal shares);
- draws every `nnx.Dropout`'s mask per example from the example's position in the global
  batch (`GlobalDropout`), so that 1 device and 8 devices train alike;
- collects what the module sows as `nnx.Intermediate` (`self.sow(nnx.Intermediate,
  "relu0", x)`) into the "features" collection that viz draws, as a Linen model's
  `self.sow("features", ...)`.
"""
from __future__ import annotations

import functools
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import bridge

from cnnjax.models.layers import example_keys


def is_nnx(cls) -> bool:
  return isinstance(cls, type) and issubclass(cls, nnx.Module)


class GlobalDropout(nnx.Dropout):
  """`nnx.Dropout` with one key per example, folded from its global batch position (as
  `layers.Dropout` does for Linen): the masks do not depend on the device count."""
  axis_name: str | None = None  # Set by the bridge.

  def __call__(self, inputs, *, deterministic=None, rngs=None):
    deterministic = self.deterministic if deterministic is None else deterministic
    if deterministic or self.rate == 0.0:
      return inputs
    rngs = self.rngs if rngs is None else rngs
    if isinstance(rngs, nnx.Rngs):
      key = rngs[self.rng_collection]()
    elif isinstance(rngs, nnx.RngStream):
      key = rngs()
    else:
      key = rngs
    keys = example_keys(key, inputs.shape[0], self.axis_name)
    drop = super().__call__  # Each example's mask, drawn by nnx.Dropout from its own key.
    return jax.vmap(lambda x, k: drop(x[None], deterministic=False, rngs=k)[0])(inputs, keys)


def _run(module: nnx.Module, x, train: bool, axis_name: str | None):
  """Calls the NNX module the bridge built for this call: (logits, sown feature maps)."""
  for _, node in nnx.iter_graph(module):
    if type(node) is nnx.Dropout:
      node.__class__ = GlobalDropout  # Same fields; only how the mask is drawn differs.
      node.axis_name = axis_name
    elif isinstance(node, nnx.BatchNorm) and node.axis_name is None:
      node.axis_name = axis_name
  if train:
    module.train()
  else:
    module.eval()
  logits, sown = nnx.capture(module, nnx.Intermediate)(x)
  return logits, {"/".join(map(str, path)): v.get_value() for path, v in nnx.to_flat_state(sown)}


class Bridged(bridge.ToLinen):
  """An NNX module class with its constructor's keyword arguments, as a Linen model
  called `model(x, train=...)` like every other."""
  axis_name: str | None = None  # The device axis (BatchNorm statistics, dropout keys).

  def init_with_output(self, rngs, *args, **kwargs):
    # The module is built with nnx.Rngs of these streams: "params", and "default" for any
    # other stream its layers fork at construction (nnx.Dropout's "dropout").
    if not isinstance(rngs, dict):
      rngs = {"params": rngs, "default": jax.random.fold_in(rngs, 1)}
    return super().init_with_output(rngs, *args, **kwargs)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    logits, sown = super().__call__(x, train, nnx_method=functools.partial(
        _run, axis_name=self.axis_name))
    for name, values in sown.items():
      for value in values:
        self.sow("features", name, value)
    return logits


def abstract(cls, kwargs: dict) -> nnx.Module:
  """The module built from `kwargs` with abstract arrays: its constructor's checks run,
  nothing is computed."""
  return nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))


def summary(model: Bridged, input_shape: Sequence[int]) -> str:
  """nnx.tabulate's table of the module's layers, output shapes and parameters."""
  module = model.nnx_class(**model.kwargs, rngs=nnx.Rngs(0))
  x = jnp.zeros((1, *input_shape), jnp.float32)
  with warnings.catch_warnings():  # Its sow() calls run outside nnx.capture here.
    warnings.simplefilter("ignore", DeprecationWarning)
    return nnx.tabulate(module, x, depth=1, console_kwargs={
        "width": 120, "color_system": None, "force_terminal": False})
