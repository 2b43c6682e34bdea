"""Pure per-device train and eval steps, to be mapped over devices (see `parallel`).

Under a device axis named `axis_name`, gradients are averaged with `lax.pmean`,
BatchNorm statistics are computed over the global batch (the model's BatchNorm takes
the same axis name), and metrics are gathered over all devices. Randomness comes from
the state's key folded with the step number and each example's global position, so a
global batch gives the same update on 1 or N devices.
"""

import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics
from flax import struct

from cnnjax.data import transforms
from cnnjax.models.layers import example_ids, example_keys, micro_batch


@struct.dataclass
class FirstNonfiniteStep(clu_metrics.Metric):
  """The first step (1-based) whose loss or gradient was NaN or infinite; -1 if none."""
  step: jnp.ndarray

  @classmethod
  def empty(cls):
    return cls(step=jnp.array(-1, jnp.int32))

  @classmethod
  def from_model_output(cls, nonfinite_step, **_):
    return cls(step=jnp.asarray(nonfinite_step, jnp.int32))

  def merge(self, other):
    return type(self)(step=jnp.where(self.step >= 0, self.step, other.step))

  def compute(self):
    return self.step


@struct.dataclass
class TrainMetrics(clu_metrics.Collection):
  loss: clu_metrics.Average.from_output("loss")
  accuracy: clu_metrics.Accuracy
  grad_norm: clu_metrics.Average.from_output("grad_norm")
  nonfinite_step: FirstNonfiniteStep


@struct.dataclass
class EvalMetrics(clu_metrics.Collection):
  loss: clu_metrics.Average.from_output("loss")
  accuracy: clu_metrics.Accuracy


def _variables(params, batch_stats):
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def forward(apply_fn, variables, images, *, mean: float, std: float, capture: bool = False):
  """The logits of raw images (uint8 pixels, or float series) in evaluation mode,
  standardised as training does: the one forward path of every evaluation (the loop's
  eval_step, `cnnjax eval`, `predict`, `viz`, `load_run`). With `capture`, (logits,
  feature maps): what the model sows into its "features" collection."""
  x = transforms.standardize(images, mean, std)
  if not capture:
    return apply_fn(variables, x, train=False)
  logits, state = apply_fn(variables, x, train=False, mutable=["features"])
  return logits, {k: v[0] for k, v in state.get("features", {}).items()}


def _mixed(x, targets, key, axis_name, mixup_alpha: float, cutmix_alpha: float):
  """Mixup/CutMix of this device's examples, each with a partner from the global batch: a
  permutation of the global batch drawn from the step's key (the same on every device)
  and per-example weights from keys of their global positions, so the mixing does not
  depend on how the batch is split over devices."""
  n = x.shape[0]
  everyone = (x, targets)
  if axis_name:
    everyone = jax.tree.map(lambda a: jax.lax.all_gather(a, axis_name, tiled=True), everyone)
  ids = example_ids(n, axis_name)
  partners = jax.random.permutation(jax.random.fold_in(key, 0), everyone[0].shape[0])[ids]
  keys = example_keys(jax.random.fold_in(key, 1), n, axis_name)
  return transforms.mix(x, targets, everyone[0][partners], everyone[1][partners], keys,
                        mixup_alpha, cutmix_alpha)


def train_step(state, batch, *, num_classes: int, label_smoothing: float, mean: float,
               std: float, augment_shift: int, axis_name, augment_rotate: float = 0.0,
               augment_scale: float = 0.0, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
               accumulate_steps: int = 1, ema_decay: float = 0.0):
  """One optimizer step on this device's slice of the global batch (in `accumulate_steps`
  micro-batches whose gradients add up to the batch's); the moving average of the weights
  follows with `ema_decay`.

  Returns the new state and the step's metrics (already combined over devices).
  """
  step_key = jax.random.fold_in(state.rng, state.step)
  augment_key, dropout_key = jax.random.split(step_key)
  images, labels = batch["images"], batch["labels"]
  if augment_shift:
    keys = example_keys(augment_key, images.shape[0], axis_name)
    images = transforms.random_shift(images, keys, augment_shift)
  x = transforms.standardize(images, mean, std)
  if augment_rotate or augment_scale:
    keys = example_keys(jax.random.fold_in(augment_key, 1), images.shape[0], axis_name)
    x = transforms.random_rotate_scale(x, keys, augment_rotate, augment_scale,
                                       fill=-mean / std)  # A 0 pixel, standardised.
  targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
  if mixup_alpha or cutmix_alpha:
    x, targets = _mixed(x, targets, jax.random.fold_in(augment_key, 2), axis_name,
                        mixup_alpha, cutmix_alpha)

  mask = batch.get("mask")  # Present when config.pad_batch padded the global batch.
  if mask is not None:
    # Each device's share of the global mean over real examples, so that averaging the
    # gradients over devices (pmean below) gives the gradient of that global mean.
    devices = jax.lax.psum(1, axis_name) if axis_name else 1
    real = jnp.sum(mask)
    real = jax.lax.psum(real, axis_name) if axis_name else real

  def loss_fn(params, batch_stats, x, targets, mask, share):
    """This part's loss: its share (`share` of this device's examples) of the device's."""
    padding = {} if mask is None else {"mask": mask}  # For the model's batch statistics.
    logits, updates = state.apply_fn(_variables(params, batch_stats), x, train=True, **padding,
                                     rngs={"dropout": dropout_key}, mutable=["batch_stats"])
    losses = optax.softmax_cross_entropy(logits, targets)
    if mask is None:
      return losses.mean() * share, (losses, logits, updates)
    return jnp.sum(jnp.where(mask, losses, 0.0)) * devices / real, (losses, logits, updates)

  grad_fn = jax.grad(loss_fn, has_aux=True)
  if accumulate_steps == 1:
    grads, (losses, logits, updates) = grad_fn(state.params, state.batch_stats, x, targets,
                                               mask, 1)
  else:
    grads, (losses, logits, updates) = _accumulated(grad_fn, state, x, targets, mask,
                                                    accumulate_steps)
  if axis_name:
    grads = jax.lax.pmean(grads, axis_name)
  new_state = state.apply_gradients(grads=grads,
                                    batch_stats=updates.get("batch_stats", state.batch_stats))
  if ema_decay:
    average = {"params": new_state.params, "batch_stats": new_state.batch_stats}
    new_state = new_state.replace(ema=optax.incremental_update(average, state.ema, 1 - ema_decay))
  grad_norm = optax.tree.norm(grads)  # optax.global_norm, by its current name.
  finite = jnp.isfinite(jnp.sum(losses if mask is None else jnp.where(mask, losses, 0.0)))
  finite &= jnp.isfinite(grad_norm)
  outputs = dict(loss=losses, logits=logits, labels=labels, grad_norm=grad_norm[None],
                 nonfinite_step=jnp.where(finite, -1, state.step + 1))
  if mask is not None:
    outputs["mask"] = mask
  step_metrics = TrainMetrics.gather_from_model_output(axis_name=axis_name, **outputs) \
      if axis_name else TrainMetrics.single_from_model_output(**outputs)
  return new_state, step_metrics


def _accumulated(grad_fn, state, x, targets, mask, k: int):
  """The gradient of this device's batch as the sum of its `k` micro-batches' (a scan: one
  micro-batch's activations live at a time), with their losses and logits in batch order.
  Models without BatchNorm only (checked by loop.prepare): its statistics would be each
  micro-batch's, not the batch's."""
  parts = jax.tree.map(lambda a: a.reshape((k, a.shape[0] // k, *a.shape[1:])),
                       {"x": x, "targets": targets, "mask": mask})

  def add(grads, part):
    index, part = part
    with micro_batch(index, k):
      g, aux = grad_fn(state.params, state.batch_stats, part["x"], part["targets"],
                       part["mask"], 1 / k)
    return jax.tree.map(jnp.add, grads, g), aux

  zeros = jax.tree.map(jnp.zeros_like, state.params)
  grads, (losses, logits, updates) = jax.lax.scan(add, zeros, (jnp.arange(k), parts))
  whole = lambda a: a.reshape((-1, *a.shape[2:]))
  return grads, (whole(losses), whole(logits), {})


def eval_metrics(logits, labels, mask=None, *, axis_name=None) -> EvalMetrics:
  """Cross-entropy loss and accuracy of `logits` against integer `labels`; examples with
  mask 0 count nothing. Under `axis_name`, gathered over its devices. The one definition
  of evaluation: the loop's eval step and `cnnjax eval` (viz.evaluate) both use it."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  kwargs = dict(loss=losses, logits=logits, labels=labels, mask=mask)
  if axis_name:
    return EvalMetrics.gather_from_model_output(axis_name=axis_name, **kwargs)
  return EvalMetrics.single_from_model_output(**kwargs)


def eval_step(state, batch, *, mean: float, std: float, axis_name):
  """Summed loss and accuracy of one eval batch; padded examples (mask 0) count nothing."""
  logits = forward(state.apply_fn, _variables(state.params, state.batch_stats), batch["images"], mean=mean,
                   std=std)
  return eval_metrics(logits, batch["labels"], batch["mask"], axis_name=axis_name)
