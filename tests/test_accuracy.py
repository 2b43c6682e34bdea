"""Training to accuracy on the real MNIST files: opt-in, `python -m pytest -m slow`.

Each trains one config on the 8 simulated CPU devices of conftest.py; mnist.py takes minutes.
"""
import pytest

from cnnjax import config as config_lib
from cnnjax.train.loop import train_and_evaluate
from helpers import ROOT


@pytest.mark.slow
@pytest.mark.parametrize("name, target", [
    ("mnist_talk.py", 0.985), ("mnist.py", 0.994), ("mnist_fast.py", 0.99),
    ("mnist_mlp.py", 0.98)])
def test_default_configs_reach_their_accuracy(name, target, mnist_dir, tmp_path):
  # config.cpu_devices does not apply: conftest's XLA_FLAGS already set 8 CPU devices.
  config = config_lib.load(str(ROOT / "configs" / name), {"data.dir": str(mnist_dir)})
  summary = train_and_evaluate(config, tmp_path / "run")
  assert summary["status"] == "finished"
  assert summary["test_accuracy"] >= target
