"""`cnnjax plan`: XLA's figures of the compiled train step, checked against a count by
hand, and the memory limit's exit."""
import json

import pytest

from cnnjax import cli
from cnnjax import config as config_lib
from cnnjax.train import plan
from helpers import NUM_DEVICES, ROOT

TALK = str(ROOT / "configs" / "mnist_talk.py")


def _talk(tiny_data_dir, **fields):
  return config_lib.load(TALK, {"data.dir": str(tiny_data_dir), "data.validation_examples": 0,
                                **fields})


def test_the_talk_cnns_flops_match_a_count_by_hand(tiny_data_dir):
  """conv 1->8 and 8->16 (3x3, padding 1), each pooled 2x2, then dense 144->10, on 12x12
  images: a multiply-add is 2 FLOPs; training computes the forward pass, the gradients of
  the weights (as many FLOPs again) and of the inputs of every layer but the first."""
  p = plan.plan(_talk(tiny_data_dir))
  conv1, conv2, dense = 12 * 12 * 9 * 1 * 8, 6 * 6 * 9 * 8 * 16, 3 * 3 * 16 * 10
  by_hand = 2 * (2 * conv1 + 3 * conv2 + 3 * dense)
  assert p.batch_size == 128 and p.devices == NUM_DEVICES
  assert p.params == (9 * 8 + 8) + (9 * 8 * 16 + 16) + (144 * 10 + 10)
  # The rest is elementwise: ReLU, pooling, softmax, the optimizer's update.
  assert 1.0 < p.flops_per_example / by_hand < 1.25, p.flops_per_example / by_hand
  assert p.flops_per_step == pytest.approx(p.flops_per_example * 128)
  assert p.temp_bytes > 0 and p.argument_bytes > 0 and p.compile_seconds > 0
  assert p.peak_bytes == p.argument_bytes + p.output_bytes - p.alias_bytes + p.temp_bytes


def test_accumulation_keeps_the_flops_and_shrinks_the_temporaries(tiny_data_dir):
  whole = plan.plan(_talk(tiny_data_dir, batch_size=256))
  parts = plan.plan(_talk(tiny_data_dir, batch_size=256, accumulate_steps=4))
  assert parts.flops_per_step == whole.flops_per_step  # Counted on the update in one piece.
  assert parts.temp_bytes < whole.temp_bytes / 2


def test_a_step_over_the_memory_limit_exits_2_naming_the_batch_size(tiny_data_dir, capsys):
  args = ["plan", TALK, f"--config.data.dir={tiny_data_dir}", "--config.data.validation_examples=0"]
  assert cli.main(args + ["--memory-limit", "300KiB"]) == 2
  out, err = capsys.readouterr()
  assert "FLOPs per step" in out
  assert "cnnjax plan: error: config.batch_size: the train step needs" in err
  assert "over the limit of 300.0 KiB: lower config.batch_size=128" in err
  assert "config.accumulate_steps" in err  # The talk CNN has no BatchNorm: it can accumulate.
  assert cli.main(args + ["--memory-limit", "4GiB", "--json"]) == 0
  figures = json.loads(capsys.readouterr().out)
  assert figures["peak_bytes"] < 4 * 2**30 and figures["params"] == 2698
  assert cli.main(args + ["--memory-limit", "lots"]) == 2


@pytest.mark.parametrize("text, value", [("2GiB", 2 * 2**30), ("512MB", 512e6), ("1e9", 1e9),
                                         ("64 KiB", 65536)])
def test_memory_sizes_read_in_binary_and_decimal_units(text, value):
  assert plan.parse_bytes(text) == value
