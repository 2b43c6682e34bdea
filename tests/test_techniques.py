"""Research techniques at the level of the train step, on in-memory batches: mixup and
CutMix, gradient accumulation, the moving average of the weights, frozen parameters, and
the checks of their config fields."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import config as config_lib
from cnnjax import tree_paths
from cnnjax.data import transforms
from cnnjax.errors import ConfigError
from cnnjax.train import loop
from helpers import NUM_DEVICES, ROOT, synthetic_digits, train_steps

SHAPE = (12, 12, 1)


def _batches(n_steps, batch_size=16, seed=5):
  images, labels = synthetic_digits(n_steps * batch_size, seed=seed)
  return [{"images": images[i * batch_size:(i + 1) * batch_size][..., None],
           "labels": labels[i * batch_size:(i + 1) * batch_size].astype(np.int32)}
          for i in range(n_steps)]


def _with(config, **fields):
  return config_lib.with_overrides(config, {k.replace("__", "."): v for k, v in fields.items()})


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def _max_diff(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("fields, mode", [
    (dict(data__mixup_alpha=0.4), "pmap"), (dict(data__cutmix_alpha=1.0), "pmap"),
    (dict(data__mixup_alpha=0.2, data__cutmix_alpha=1.0), "shard_map")])
def test_mixing_gives_the_same_run_on_one_and_eight_devices(tiny_config, fields, mode):
  config = _with(tiny_config, **fields)
  batches = _batches(3)
  one = train_steps(config, "pmap", 1, batches, 4, SHAPE)
  eight = train_steps(config, mode, NUM_DEVICES, batches, 4, SHAPE)
  plain = train_steps(tiny_config, "pmap", 1, batches, 4, SHAPE)
  assert _max_diff(one[:2], eight[:2]) < 1e-5
  assert _max_diff(one[:2], plain[:2]) > 1e-3  # Mixing changed the run.
  # Accuracy is measured on the hard labels: still a count of whole examples.
  accuracy = one[2].accuracy
  assert float(accuracy.count) == 3 * 16 and float(accuracy.total) == int(accuracy.total)


def test_alpha_zero_is_bit_identical_to_no_mixing(tiny_config):
  batches = _batches(2)
  off = train_steps(tiny_config, "pmap", 2, batches, 4, SHAPE)
  zero = train_steps(_with(tiny_config, data__mixup_alpha=0.0, data__cutmix_alpha=0.0),
                     "pmap", 2, batches, 4, SHAPE)
  _assert_trees_equal(off[:2], zero[:2])


def test_mixup_and_cutmix_mix_inputs_and_targets_alike():
  x = jnp.zeros((64, 8, 10, 1))
  partner = jnp.ones((64, 8, 10, 1))
  t, pt = jax.nn.one_hot(jnp.zeros(64, int), 3), jax.nn.one_hot(jnp.ones(64, int), 3)
  keys = jax.random.split(jax.random.key(0), 64)
  mixed, targets = transforms.mix(x, t, partner, pt, keys, 0.4, 0.0)
  # Mixup: every pixel is the partner's weight 1 - lam, its class's share of the target.
  np.testing.assert_allclose(mixed[:, 0, 0, 0], targets[:, 1], rtol=1e-5)
  np.testing.assert_allclose(mixed.std(axis=(1, 2, 3)), 0, atol=1e-6)
  cut, targets = transforms.mix(x, t, partner, pt, keys, 0.0, 1.0)
  # CutMix: pixels are 0 or 1, and the target keeps the fraction of 0s (this example's).
  assert set(np.unique(cut)) <= {0.0, 1.0}
  np.testing.assert_allclose(1 - cut.mean(axis=(1, 2, 3)), targets[:, 0], rtol=1e-6)
  np.testing.assert_allclose(targets.sum(-1), 1, rtol=1e-6)
  # The partner's part is one box: its rows and columns form a rectangle.
  for image in np.asarray(cut[..., 0]):
    rows, cols = image.any(1), image.any(0)
    np.testing.assert_array_equal(image, np.outer(rows, cols))
  volumes = jnp.zeros((4, 6, 6, 6, 1))
  cubes, _ = transforms.mix(volumes, t[:4], volumes + 1, pt[:4], keys[:4], 0.0, 1.0)
  assert set(np.unique(cubes)) <= {0.0, 1.0}  # A box in 3-D too.


def test_accumulated_micro_batches_equal_the_whole_batch(tiny_config):
  """Without BatchNorm, 4 micro-batches of 4 make the update of the batch of 16, dropout
  and augmentation included (drawn per example from its place in the global batch)."""
  config = _with(tiny_config, model__batch_norm=False, optimizer__name="sgd")
  batches = _batches(20)
  whole = train_steps(config, "pmap", 1, batches, 4, SHAPE)
  for mode, n, k in (("pmap", 1, 4), ("pmap", 2, 2), ("shard_map", 2, 8)):
    parts = train_steps(_with(config, accumulate_steps=k), mode, n, batches, 4, SHAPE)
    assert _max_diff(whole[0], parts[0]) < 1e-5, (n, k)
    assert float(parts[2].accuracy.total) == float(whole[2].accuracy.total)
    np.testing.assert_allclose(parts[2].compute()["loss"], whole[2].compute()["loss"], rtol=1e-5)


def test_the_moving_average_follows_the_weights(tiny_config):
  from cnnjax import models
  from cnnjax.train import parallel, steps
  from cnnjax.train.optim import create_optimizer
  from cnnjax.train.state import create_train_state, with_ema
  config = _with(tiny_config, optimizer__ema_decay=0.9)
  dmap = parallel.DeviceMap("pmap", parallel.select_devices(2), config, 4)
  model = models.build(config.model, 4, SHAPE, parallel.AXIS)
  tx, _ = create_optimizer(config.optimizer, 10, 1)
  state = with_ema(create_train_state(model, SHAPE, tx, 0))
  rstate = dmap.replicate(state)
  expected = {"params": state.params, "batch_stats": state.batch_stats}
  for batch in _batches(3):
    rstate, _ = dmap.train_step(rstate, dmap.replicate(steps.TrainMetrics.empty()),
                                dmap.split(batch))
    now = dmap.unreplicate({"params": rstate.params, "batch_stats": rstate.batch_stats})
    expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, expected, now)
  assert _max_diff(dmap.unreplicate(rstate.ema), expected) < 1e-6
  assert _max_diff(dmap.unreplicate(rstate.ema["params"]), now["params"]) > 1e-4
  # Off: no moving average in the state (nor in its checkpoints).
  assert create_train_state(model, SHAPE, tx, 0).ema == {}


def test_frozen_parameters_stay_bit_identical(tiny_config):
  config = _with(tiny_config, optimizer__frozen=("conv0", "bn*"))
  batches = _batches(4)
  before = train_steps(config, "pmap", 2, [], 4, SHAPE)[0]
  after = train_steps(config, "pmap", 2, batches, 4, SHAPE)[0]
  changed = {p: not np.array_equal(a, b) for (p, a), b in
             zip(tree_paths.leaves(before).items(), jax.tree.leaves(after))}
  frozen = {p for p in changed if tree_paths.matches(p, config.optimizer.frozen)}
  assert frozen and not any(changed[p] for p in frozen)  # Weight decay included.
  assert all(changed[p] for p in changed if p not in frozen)


def test_patterns_that_match_nothing_name_the_closest_paths():
  params = {"ConvBlock_0": {"Conv_0": {"kernel": 1, "bias": 1}}, "Dense_0": {"kernel": 1}}
  with pytest.raises(ConfigError, match=r"config\.optimizer\.frozen: 'Dense_1' matches no "
                                        r"parameter of the model; closest: Dense_0"):
    tree_paths.check_patterns(params, ["Dense_0", "Dense_1"], "optimizer.frozen")
  assert tree_paths.matches("ConvBlock_0/Conv_0/kernel", ["ConvBlock_0"])
  assert not tree_paths.matches("Dense_10/kernel", ["Dense_1"])
  assert tree_paths.labels(params, ["Conv*"], "f", "t") == {
      "ConvBlock_0": {"Conv_0": {"kernel": "f", "bias": "f"}}, "Dense_0": {"kernel": "t"}}


@pytest.mark.parametrize("fields, message", [
    ({"accumulate_steps": 2}, r"config\.accumulate_steps: model 'cnn' has BatchNorm"),
    ({"accumulate_steps": 3, "model.batch_norm": False},
     r"config\.accumulate_steps: 3 does not divide each device's 2 examples"),
    ({"data.mixup_alpha": 0.2, "pad_batch": True}, r"config\.data\.mixup_alpha: mixing takes "
                                                   r"partners from full batches"),
    ({"optimizer.frozen": ("Conv_9",)}, r"config\.optimizer\.frozen: 'Conv_9' matches no "
                                        r"parameter"),
    ({"profile.num_steps": 10, "profile.start_step": 25},
     r"config\.profile\.start_step: the window of steps 26 to 35 ends past the run's 32 steps"),
    ({"init.from_run": "/nonexistent/run"}, r"config\.init\.from_run: '/nonexistent/run' is "
                                            r"not a run directory"),
])
def test_fields_that_need_the_model_or_data_fail_before_anything_is_written(
    tiny_config, tmp_path, fields, message):
  config = config_lib.with_overrides(tiny_config, {"cpu_devices": 0, **fields})
  with pytest.raises(ConfigError, match=message):
    loop.train_and_evaluate(config, tmp_path / "run")
  assert {p.name for p in (tmp_path / "run").iterdir()} <= {".lock"}  # No record.


def test_data_classes_keep_and_relabel_the_classes_in_order(tiny_config):
  from cnnjax import data
  full = data.load(tiny_config.data, 0)
  some = data.load(config_lib.with_overrides(tiny_config, {"data.classes": (3, 1)}).data, 0)
  assert some.num_classes == 2 and some.class_names == ("3", "1")
  kept = full.test_labels[np.isin(full.test_labels, [3, 1])]
  np.testing.assert_array_equal(some.test_labels, np.where(kept == 3, 0, 1))
  # The validation split is held out of the kept training examples.
  every = lambda d: np.concatenate([d.train_labels, d.val_labels])
  assert np.bincount(every(some)).tolist() == [np.sum(every(full) == c) for c in (3, 1)]
  with pytest.raises(ConfigError, match=r"config\.data\.classes: 7 is not a class of"):
    data.load(config_lib.with_overrides(tiny_config, {"data.classes": (7, 1)}).data, 0)


def test_a_run_started_before_these_fields_existed_resumes(tmp_path):
  """Its config.json lacks the new fields (they count as their defaults) and its
  checkpoints lack the state's empty moving average (no leaf is missing)."""
  from cnnjax.runs.checkpoints import Checkpoints
  from cnnjax.runs.records import config_changes
  new = config_lib.to_dict(config_lib.load(str(ROOT / "configs" / "tiny.py")))
  old = {k: v for k, v in new.items() if k not in ("accumulate_steps", "init", "profile")}
  assert config_changes(old, new) == []
  assert config_changes(old, {**new, "accumulate_steps": 2}) == ["accumulate_steps: 1 -> 2"]
  ckpts = Checkpoints(tmp_path, keep=1)
  ckpts.save(3, {"state": {"params": {"w": np.arange(4.0)}}}, selected=False)
  restored = ckpts.restore_latest({"state": {"params": {"w": np.zeros(4)}, "ema": {}}})
  ckpts.close()
  np.testing.assert_array_equal(restored["state"]["params"]["w"], np.arange(4.0))
  assert restored["state"]["ema"] == {}
