import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import config as config_lib
from cnnjax import models
from cnnjax.errors import ConfigError
from cnnjax.models import batch_last
from cnnjax.models.layers import max_pool
from helpers import ROOT


def _config(config_name, overrides=None):
  return config_lib.load(str(ROOT / "configs" / config_name), overrides)


def _build(config_name, overrides=None, input_shape=(28, 28, 1)):
  config = _config(config_name, overrides)
  model = models.build(config.model, 10, input_shape)
  init = jax.jit(lambda key, x: model.init(key, x, train=False))  # One compile, not one per op.
  return model, init(jax.random.key(0), jnp.zeros((2, *input_shape)))


# Exact sizes pin the architectures: a change to any of them must be deliberate.
@pytest.mark.parametrize("config_name, overrides, params, stats", [
    ("mnist_talk.py", None, 9_098, 0),                          # 80 + 1,168 + 7,850
    ("mnist_talk.py", {"model.conv_features": (9, 16)}, 9_252, 0),   # the talk's crash, fixed
    ("mnist_talk.py", {"model.conv_features": (8, 16, 32)}, 8_778, 0),  # a third block
    ("mnist.py", None, 421_738, 192),
    ("mnist_mlp.py", None, 235_146, 0),
    ("mnist_fast.py", None, 103_042, 48),  # 72 + 16 + 1,152 + 32 + 100,480 + 1,290 (BN: no conv bias)
])
def test_exact_parameter_counts(config_name, overrides, params, stats):
  model, variables = _build(config_name, overrides)
  assert models.param_count(variables["params"]) == params
  assert models.param_count(variables.get("batch_stats", {})) == stats
  logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables,
                          jnp.zeros((2, 28, 28, 1)))
  assert logits.shape == (2, 10)


@pytest.mark.parametrize("layout, conv0, conv1", [
    ("batch_first", (1, 28, 28, 8), (1, 14, 14, 16)),
    ("batch_last", (8, 28, 28, 1), (16, 14, 14, 1)),  # (C, H, W, N): see models/batch_last.py.
])
def test_talk_cnn_feature_map_shapes(layout, conv0, conv1):
  model, variables = _build("mnist_talk.py", {"model.layout": layout})
  _, state = model.apply(variables, jnp.zeros((1, 28, 28, 1)), capture_intermediates=True,
                         mutable=["intermediates"])
  shapes = {k: v["__call__"][0].shape for k, v in state["intermediates"].items() if k != "__call__"}
  assert shapes["conv0"] == conv0
  assert shapes["conv1"] == conv1
  assert shapes["classifier"] == (1, 10)


@pytest.mark.parametrize("config_name, overrides, input_shape", [
    ("mnist_talk.py", None, (28, 28, 1)),
    # BatchNorm after pooling, dropout, a hidden dense layer:
    ("mnist.py", {"model.conv_features": (8, 16)}, (28, 28, 1)),
    ("mnist_talk.py", {"model.padding": "VALID", "model.kernel_sizes": ((3, 2), (2, 3))}, (28, 28, 1)),
    ("mnist_talk.py", {"model.padding": (2, 0), "model.pool_size": (2, 3)}, (28, 27, 3)),
    ("mnist_talk.py", {"model.padding": 3, "model.kernel_size": 2}, (12, 12, 1)),  # pad > kernel
    ("ucr_fcn.py", {"model.conv_features": (4, 6, 5)}, (40, 2)),  # 1-D, global average head
    ("volumes_3d.py", None, (12, 10, 8, 1)),  # 3-D, BatchNorm
])
def test_batch_last_layout_computes_the_same_network(config_name, overrides, input_shape):
  """Same parameters, same outputs, BatchNorm statistics and gradients (up to float32
  rounding: products are summed in another order), padded examples masked alike."""
  results = []
  for layout in ("batch_first", "batch_last"):
    model, variables = _build(config_name, {**(overrides or {}), "model.layout": layout},
                              input_shape)
    x = jax.random.normal(jax.random.key(3), (6, *input_shape))
    mask = jnp.array([1, 1, 1, 1, 1, 0], bool)

    def loss(params):
      logits, updates = model.apply({**variables, "params": params}, x, train=True, mask=mask,
                                    rngs={"dropout": jax.random.key(4)}, mutable=["batch_stats"])
      return jnp.sum(logits[:5] ** 2), (logits, updates)

    grads, (logits, updates) = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
    evaluated = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    results.append((variables, logits, updates, grads, evaluated))
  (v1, *outs1), (v2, *outs2) = results
  assert jax.tree.structure(v1) == jax.tree.structure(v2)
  jax.tree.map(np.testing.assert_array_equal, v1, v2)  # The same initialisation.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5), outs1, outs2)


def test_auto_layout_puts_small_blocks_batch_last_on_a_cpu():
  picks = lambda features: [batch_last.block_batch_last("auto", c, (3, 3), f)
                            for c, f in zip((1, *features), features)]
  config = lambda name: _config(name).model.conv_features
  assert picks(config("mnist_talk.py")) == picks(config("mnist_fast.py")) == [True, True]  # 1x9 -> 8, 8x9 -> 16
  assert picks((16, 32)) == [True, False]  # 16x9 = 144 inputs per output
  assert picks(config("mnist.py")) == [False, False]  # 32 features
  assert not batch_last.block_batch_last("batch_first", 1, (3, 3), 8)
  assert batch_last.block_batch_last("batch_last", 512, (3, 3), 512)


def test_too_much_pooling_fails_before_compile_naming_the_field():
  config = config_lib.load(str(ROOT / "configs" / "mnist_talk.py"),
                           {"model.conv_features": (8, 16, 32, 64, 128)})
  with pytest.raises(ConfigError, match=r"config\.model\.conv_features: 5 conv blocks.*block 5 "
                                        r"gets a 1x1 feature map from the 28x28 input"):
    models.build(config.model, 10, (28, 28, 1))


def test_summary_lists_layers_shapes_and_total():
  model, _ = _build("mnist_talk.py")
  text = models.summary(model, (28, 28, 1))
  for expected in ("conv0", "conv1", "classifier", "float32[1,14,14,16]", "9,098"):
    assert expected in text


@pytest.mark.parametrize("shape", [(3, 28, 28, 5), (2, 7, 9, 3), (2, 16, 4), (1, 6, 6, 6, 2)])
def test_max_pool_and_its_gradient_equal_flax_valid_pooling(shape):
  x = jax.random.normal(jax.random.key(1), shape)
  rank = len(shape) - 2
  flax_pool = lambda x: nn.max_pool(x, (2,) * rank, strides=(2,) * rank, padding="VALID")
  np.testing.assert_array_equal(max_pool(x, 2), flax_pool(x))
  weights = jax.random.normal(jax.random.key(2), flax_pool(x).shape)
  grad = lambda pool: jax.grad(lambda x: jnp.sum(pool(x) * weights))(x)
  np.testing.assert_array_equal(grad(lambda x: max_pool(x, 2)), grad(flax_pool))


def test_max_pool_shares_the_gradient_among_tied_maxima():
  x = jnp.array([[1.0, 1.0], [1.0, 0.0]]).reshape(1, 2, 2, 1)  # Three tied maxima.
  grad = jax.grad(lambda x: max_pool(x, 2).sum())(x).reshape(2, 2)
  # Pairwise halves: rows first (1 vs 1: half each; 1 vs 0: all to 1), then the columns.
  np.testing.assert_array_equal(grad, [[0.25, 0.5], [0.25, 0.0]])
  assert float(grad.sum()) == 1.0

class PlainFlaxCNN(nn.Module):
  """configs/mnist_talk.py written with stock Flax layers only: the reference for the
  fast layers of cnnjax.models (reshape max pooling with its own gradient)."""

  @nn.compact
  def __call__(self, x):
    for i, features in enumerate((8, 16)):
      x = nn.relu(nn.Conv(features, (3, 3), padding="SAME", name=f"conv{i}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    return nn.Dense(10, name="classifier")(x.reshape((x.shape[0], -1)))


def test_talk_cnn_equals_stock_flax_layers_in_value_and_gradient():
  model, variables = _build("mnist_talk.py")
  x = jax.random.normal(jax.random.key(3), (8, 28, 28, 1))
  labels = jnp.arange(8) % 10

  def loss(apply, params):
    logits = apply({"params": params}, x)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(8), labels])

  ours = jax.jit(jax.value_and_grad(lambda p: loss(model.apply, p)))(variables["params"])
  stock = jax.jit(jax.value_and_grad(lambda p: loss(PlainFlaxCNN().apply, p)))(variables["params"])
  np.testing.assert_allclose(ours[0], stock[0], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), ours[1], stock[1])


def test_bfloat16_compute_keeps_float32_parameters_and_logits():
  model, variables = _build("mnist.py", {"model.dtype": "bfloat16"})
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype("float32")}
  x = jax.random.normal(jax.random.key(2), (4, 28, 28, 1))
  low = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  full = jax.jit(lambda v, x: _build("mnist.py")[0].apply(v, x, train=False))(variables, x)
  assert low.dtype == jnp.float32
  np.testing.assert_allclose(low, full, atol=0.1)  # bfloat16 keeps ~3 significant digits.
  assert not np.array_equal(low, full)


def test_pool_first_without_batchnorm_is_the_same_function():
  """ReLU and max pooling commute, so pooling first changes only the cost."""
  no_bn = {"model.batch_norm": False, "model.pool_first": True}
  pooled_first, variables = _build("mnist_fast.py", no_bn)
  pooled_last, _ = _build("mnist_fast.py", {**no_bn, "model.pool_first": False})
  x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  apply = lambda model: jax.jit(model.apply)(variables, x)
  np.testing.assert_array_equal(apply(pooled_first), apply(pooled_last))


def test_pool_first_with_batchnorm_normalizes_the_pooled_maps():
  model, variables = _build("mnist.py", {"model.pool_first": True})
  assert variables["batch_stats"]["bn0"]["mean"].shape == (32,)
  x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  _, state = model.apply(variables, x, train=True, mutable=["batch_stats", "features"],
                         rngs={"dropout": jax.random.key(2)})
  conv0 = nn.Conv(32, (3, 3), use_bias=False).apply(
      {"params": variables["params"]["conv0"]}, x)
  pooled = max_pool(conv0, 2)
  # Running mean after one step: momentum 0.9 towards the batch mean of the pooled maps.
  np.testing.assert_allclose(state["batch_stats"]["bn0"]["mean"], 0.1 * pooled.mean((0, 1, 2)),
                             rtol=1e-5, atol=1e-6)
  assert state["features"]["pool0"][-1].shape == (4, 14, 14, 32)
