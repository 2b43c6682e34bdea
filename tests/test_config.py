import pytest

from cnnjax import config as config_lib
from cnnjax import data
from cnnjax.errors import ConfigError, UsageError
from helpers import ROOT

CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_file_loads_validates_and_round_trips(name):
  config = config_lib.load(str(ROOT / "configs" / name))
  config_lib.validate(config)
  assert config_lib.from_dict(config_lib.to_dict(config)).to_dict() == config.to_dict()


def test_a_model_and_a_data_source_own_their_fields():
  config = config_lib.load(str(ROOT / "configs" / "mnist.py"),
                           {"model.name": "resnet", "data.source": "ucr", "data.name": "GunPoint"})
  assert set(config.model) == {"name", "dtype", "conv_features", "kernel_sizes",
                               "batch_norm_momentum"}
  assert config.model.conv_features == (64, 128, 128)  # The ResNet's defaults, not mnist.py's.
  assert set(config.data) == {*data.SHARED, "name", "dir", "znorm", "unequal_length",
                              "series_length"}
  assert config.data.validation_examples == 5000  # Shared fields keep the config file's values.
  mlp = config_lib.load(str(ROOT / "configs" / "mnist_mlp.py"))
  assert set(mlp.model) == {"name", "dtype", "dense_features", "dropout_rate"}


def test_a_config_file_that_renames_its_model_without_its_fields_fails_naming_one(tmp_path):
  path = tmp_path / "renamed.py"
  path.write_text("from cnnjax.config import base_config\n\n"
                  "def get_config():\n"
                  "  config = base_config()\n"
                  "  config.model.name = 'mlp'  # The CNN's fields stay: not the MLP's.\n"
                  "  return config\n")
  with pytest.raises(ConfigError, match=r"config\.model\.batch_norm: not a field of model 'mlp' "
                                        r"\(its fields: dense_features, dropout_rate; shared: dtype, name\)"):
    config_lib.validate(config_lib.load(str(path)))


@pytest.mark.parametrize("field, value, message", [
    ("model.name", "vgg", r"config\.model\.name: 'vgg' is not one of 'cnn', 'mlp', 'nnx_cnn', 'resnet' \(or a "
                          r"class of your own, as 'package\.module:Class'\)"),
    ("data.source", "csv", r"config\.data\.source: 'csv' is not one of 'array_record', 'digits3d', "
                           r"'folder', 'idx', 'npz', 'synthetic', 'tfds', 'ucr'"),
    ("model.name", "json:loads", r"config\.model\.name: 'json:loads' is not a class"),
])
def test_an_unknown_model_or_source_names_the_field(field, value, message):
  with pytest.raises(ConfigError, match=message):
    config_lib.load(str(ROOT / "configs" / "mnist.py"), {field: value})


def test_talk_config_is_the_talks_network():
  c = config_lib.load(str(ROOT / "configs" / "mnist_talk.py")).model
  assert (c.name, tuple(c.conv_features), c.kernel_size, c.pool_size, tuple(c.dense_features)) == \
      ("cnn", (8, 16), 3, 2, ())


def test_overrides_set_nested_fields_with_types():
  config = config_lib.load(str(ROOT / "configs" / "mnist.py"),
                           {"optimizer.learning_rate": 0.05, "model.conv_features": [9, 16]})
  assert config.optimizer.learning_rate == 0.05
  assert config.model.conv_features == (9, 16)


@pytest.mark.parametrize("field", ["optimizer.learnig_rate", "optimiser.learning_rate", "epochs"])
def test_misspelt_override_names_the_field(field):
  with pytest.raises(ConfigError, match=field.split(".")[0]):
    config_lib.load(str(ROOT / "configs" / "mnist.py"), {field: 0.1})


def test_wrong_type_override_names_the_field():
  with pytest.raises(ConfigError, match=r"config\.batch_size: takes int values, got 'big'"):
    config_lib.load(str(ROOT / "configs" / "mnist.py"), {"batch_size": "big"})


def test_command_line_overrides_are_typed_by_the_field():
  overrides = config_lib.command_line_overrides([
      "--config.model.conv_features=(9, 16)", "--config.data.name", "123",
      "--config.model.padding=VALID", "--config.model.kernel_size=5", "--config.pad_batch=true",
      "--config.optimizer.learning_rate=0.1"])
  config = config_lib.load(str(ROOT / "configs" / "mnist_talk.py"), overrides)
  assert config.model.conv_features == (9, 16)
  assert config.data.name == "123"  # A text field keeps the text.
  assert (config.model.padding, config.model.kernel_size) == ("VALID", 5)  # Either type.
  assert config.pad_batch is True and config.optimizer.learning_rate == 0.1
  for bad in (["--set", "x=1"], ["--config.batch_size"], ["--config.=1"]):
    with pytest.raises(UsageError):
      config_lib.command_line_overrides(bad)


def test_misspelt_override_suggests_the_closest_field():
  with pytest.raises(ConfigError, match=r"learnig_rate: unknown field \(did you mean 'learning_rate'\?\)"):
    config_lib.load(str(ROOT / "configs" / "mnist.py"), {"optimizer.learnig_rate": "0.1"})


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, r"config\.batch_size: must be >= 1"),
    ("max_batch_fraction", 1.5, r"config\.max_batch_fraction: must be in \[0, 1\]"),
    ("num_epochs", 0, r"config\.num_epochs: must be >= 1"),
    ("optimizer.learning_rate", -0.1, r"config\.optimizer\.learning_rate: must be a positive"),
    ("optimizer.name", "adagrad", r"config\.optimizer\.name: 'adagrad' is not one of 'sgd'"),
    ("optimizer.schedule", "step", r"config\.optimizer\.schedule: 'step' is not one of"),
    ("model.dropout_rate", 1.0, r"config\.model\.dropout_rate: must be in \[0, 1\)"),
    ("model.conv_features", (8, 0), r"config\.model\.conv_features: needs one or more positive"),
    ("data.train_examples", 100, r"config\.data\.train_examples: 100 examples make no batch"),
    ("num_devices", -1, r"config\.num_devices: must be >= 0"),
    ("checkpoint.select", "test_accuracy", r"config\.checkpoint\.select: 'test_accuracy' is not one"),
    ("data.validation_examples", -1, r"config\.data\.validation_examples: must be >= 0"),
    ("model.dtype", "float16", r"config\.model\.dtype: 'float16' is not supported: .* use "
                               r"'bfloat16'"),
    ("accumulate_steps", 0, r"config\.accumulate_steps: must be >= 1"),
    ("data.mixup_alpha", -0.2, r"config\.data\.mixup_alpha: must be >= 0 \(0 = off\), got -0\.2"),
    ("data.cutmix_alpha", float("nan"), r"config\.data\.cutmix_alpha: must be >= 0"),
    ("data.classes", (3, 3), r"config\.data\.classes: needs two or more different labels"),
    ("optimizer.ema_decay", 1.0, r"config\.optimizer\.ema_decay: must be in \[0, 1\)"),
    ("checkpoint.select", "ema_val_accuracy", r"config\.checkpoint\.select: 'ema_val_accuracy' "
                                              r"needs the moving average"),
    ("init.checkpoint", "best", r"config\.init\.checkpoint: 'best' is neither 'selected', "
                                r"'latest' nor a step number"),
    ("init.skip", ("classifier",), r"config\.init\.skip: skips parameters of config\.init\."
                                   r"from_run, which is not set"),
    ("profile.num_steps", -1, r"config\.profile\.num_steps: must be >= 0"),
])
def test_impossible_values_fail_validation_naming_the_field(field, value, message):
  config = config_lib.load(str(ROOT / "configs" / "mnist.py"), {field: value})
  with pytest.raises(ConfigError, match=message):
    config_lib.validate(config)


def test_onecycle_warmup_must_be_a_fraction():
  config = config_lib.load(str(ROOT / "configs" / "mnist.py"), {"optimizer.warmup_epochs": 2.0})
  with pytest.raises(ConfigError, match=r"config\.optimizer\.warmup_epochs: for schedule 'onecycle'"):
    config_lib.validate(config)


def test_dict_round_trip_restores_the_config():
  config = config_lib.load(str(ROOT / "configs" / "mnist.py"))
  again = config_lib.from_dict(config_lib.to_dict(config))
  assert again.to_dict() == config.to_dict()


def test_selecting_on_validation_needs_a_validation_split():
  config = config_lib.load(str(ROOT / "configs" / "mnist.py"), {"data.validation_examples": 0})
  assert config_lib.select_rule(config) == "last"  # "auto" without a split.
  config.checkpoint.select = "val_accuracy"
  with pytest.raises(ConfigError, match=r"config\.checkpoint\.select: 'val_accuracy' needs a "
                                        r"validation split: set config\.data\.validation_examples"):
    config_lib.validate(config)
  talk = config_lib.load(str(ROOT / "configs" / "mnist_talk.py"))
  assert config_lib.select_rule(talk) == "val_accuracy"  # "auto" with a split.
  assert config_lib.select_rule(config_lib.load(str(ROOT / "configs" / "mnist.py"))) == "last"
