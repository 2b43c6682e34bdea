"""Training to accuracy on the real MNIST files: opt-in, `python -m pytest -m slow`.

Measured on a 2-core CPU: mnist_talk ~1 min, mnist ~4 min (on the 8 simulated devices), mnist_fast ~1 min, mnist_mlp ~1 min.
"""
import pytest

from cnnjax import config as config_lib
from cnnjax.train.loop import train_and_evaluate
from conftest import ROOT


@pytest.mark.slow
@pytest.mark.parametrize("name, target", [
    ("mnist_talk.py", 0.985), ("mnist.py", 0.994), ("mnist_fast.py", 0.99),
    ("mnist_mlp.py", 0.98)])
def test_default_configs_reach_their_accuracy(name, target, mnist_dir, tmp_path):
  # cpu_devices=0: this process already runs the 8 CPU devices of conftest.
  config = config_lib.load(str(ROOT / "configs" / name),
                           {"data.dir": str(mnist_dir), "cpu_devices": 0})
  summary = train_and_evaluate(config, tmp_path / "run")
  assert summary["status"] == "finished"
  assert summary["test_accuracy"] >= target
