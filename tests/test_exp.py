"""Comparing, plotting, reproducing and sweeping runs (`cnnjax exp`, `cnnjax sweep`)."""
import csv
import io
import json

import numpy as np
import pytest

from cnnjax import config as config_lib
from cnnjax.exp import hyper, plot, point, reproduce, sweep, table
from cnnjax.errors import UsageError
from cnnjax.exp.launchers.local import LocalLauncher
from cnnjax.runs import records
from cnnjax.runs.reader import read_run
from helpers import ROOT, THREE_POINTS, held, write_experiment


def fake_run(path, status="finished", error=None, **fields):
  """A run directory with records as training writes them, without training."""
  config = config_lib.to_dict(config_lib.load(str(ROOT / "configs" / "mnist_talk.py"), fields))
  records.write_json(path / "config.json", config)
  records.write_json(path / "run.json", {"start_time": "2026-11-27T10:00:00+00:00"})
  accuracies = [0.9, 0.95 + fields.get("optimizer.learning_rate", 0.05) / 10]
  lines = [{"step": 10 * (i + 1), "epoch": i + 1, "test_accuracy": a, "test_loss": 1 - a}
           for i, a in enumerate(accuracies)]
  (path / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
  summary = {"status": status, "test_accuracy": accuracies[-1], "val_accuracy": accuracies[-1],
             "epochs": 2, "steps": 20, "wall_seconds": 75.0}
  if error:
    summary["error"] = error
  records.write_json(path / "summary.json", summary)
  return path


@pytest.fixture
def runs(tmp_path):
  fake_run(tmp_path / "a", **{"optimizer.learning_rate": 0.02})
  fake_run(tmp_path / "b", **{"optimizer.learning_rate": 0.1, "model.conv_features": (9, 16)})
  fake_run(tmp_path / "nested" / "c", status="failed", error="TrainingError: loss is nan")
  fake_run(tmp_path / "killed", status="running")  # No process holds its lock.
  return tmp_path


def test_show_lists_runs_with_differing_params_and_metrics(runs):
  result = table.show([runs])
  assert [r["run"] for r in result.rows] == ["a", "b", "killed", "nested/c"]
  assert result.columns[:4] == ["run", "status", "started", "duration"]
  params = [c for c in result.columns if "." in c]
  assert params == ["model.conv_features", "optimizer.learning_rate"]
  row = {r["run"]: r for r in result.rows}
  assert row["b"]["model.conv_features"] == (9, 16) and row["b"]["test_accuracy"] == 0.96
  assert row["a"]["duration"] == "1m15s" and row["a"]["started"] == "2026-11-27 10:00"
  assert row["nested/c"]["status"] == "failed"
  assert row["killed"]["status"] == "interrupted"
  text = result.to_text()
  assert "nested/c: TrainingError: loss is nan" in text
  assert len(table.show([runs], all_params=True).columns) > 40


def test_a_live_run_shows_as_running(runs):
  with held(runs / "killed"):
    assert {r["run"]: r["status"] for r in table.show([runs]).rows}["killed"] == "running"
  # The lock file stays behind when its holder ends; no process holds it.
  assert {r["run"]: r["status"] for r in table.show([runs]).rows}["killed"] == "interrupted"


def test_a_failed_record_write_leaves_the_old_record_and_no_temporary_file(tmp_path):
  records.write_json(tmp_path / "summary.json", {"status": "running"})
  with pytest.raises(TypeError):  # json.dump fails after writing part of the file.
    records.write_json(tmp_path / "summary.json", {"status": "finished", (1, 2): "bad key"})
  assert records.read_json(tmp_path / "summary.json") == {"status": "running"}
  assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_metrics_line_still_being_written_is_skipped(runs):
  with open(runs / "a" / "metrics.jsonl", "a") as f:
    f.write('{"step": 30, "epo')
  assert [m["step"] for m in read_run(runs / "a").metrics()] == [10, 20]


def test_sort_filter_columns(runs):
  result = table.show([runs])
  by_lr = result.sort("optimizer.learning_rate", descending=True)
  assert [r["run"] for r in by_lr.rows] == ["b", "killed", "nested/c", "a"]
  assert [r["run"] for r in result.sort("test_accuracy").rows][0] == "a"
  assert [r["run"] for r in result.filter(["test_accuracy>=0.955"]).rows] == ["b", "killed", "nested/c"]
  assert [r["run"] for r in result.filter(["status=finished", "optimizer.learning_rate<0.05"]).rows] == ["a"]
  assert [r["run"] for r in result.filter(["model.conv_features==[9, 16]"]).rows] == ["b"]
  assert result.select(["run", "test_accuracy"]).to_text().splitlines()[0].split() == ["run", "test_accuracy"]
  with pytest.raises(UsageError, match="is not FIELD OP VALUE"):
    result.filter(["test_accuracy"])


def test_output_formats(runs):
  result = table.show([runs]).select(["run", "status", "test_accuracy"])
  rows = list(csv.reader(io.StringIO(result.to_csv())))
  assert rows[0] == ["run", "status", "test_accuracy"] and rows[1] == ["a", "finished", "0.952"]
  md = result.to_markdown().splitlines()
  assert md[0] == "| run | status | test_accuracy |" and md[2] == "| a | finished | 0.952 |"
  assert json.loads(result.to_json())[1] == {"run": "b", "status": "finished", "test_accuracy": 0.96}


def test_format_table_aligns_columns_under_a_rule():
  text = table.format_table(["metric", "A"], [["loss", "0.5"], ["accuracy", "12,000"]], right=(1,))
  assert text.splitlines() == ["metric         A", "--------  ------", "loss         0.5",
                               "accuracy  12,000"]


def test_diff_names_fields_and_deltas(runs):
  result = table.diff(runs / "a", runs / "b")
  assert result["params"] == {"model.conv_features": ([8, 16], [9, 16]),
                              "optimizer.learning_rate": (0.02, 0.1)}
  a, b, delta = result["metrics"]["test_accuracy"]
  assert (a, b) == (0.952, 0.96) and delta == pytest.approx(0.008)
  assert "optimizer.learning_rate: 0.02 -> 0.1" in table.format_diff(result)


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".svg", b"<?xml")])
def test_plot_writes_an_image_labelled_by_what_differs(runs, tmp_path, suffix, magic):
  out = plot.plot_runs([runs / "a", runs / "b"], "test_accuracy", tmp_path / f"curves{suffix}")
  assert out.read_bytes().startswith(magic)
  if suffix == ".png":
    import matplotlib.image
    assert matplotlib.image.imread(out).shape[2] in (3, 4)
  labels = plot.curve_labels([table.read_run(runs / "a"), table.read_run(runs / "b")])
  assert labels == ["conv_features=(8, 16), learning_rate=0.02",
                    "conv_features=(9, 16), learning_rate=0.1"]


def test_hyper_points_and_names():
  points = hyper.product([hyper.sweep("config.model.conv_features", [(4, 16), (9, 16)]),
                          hyper.sweep("optimizer.learning_rate", [0.1, 0.2])])
  assert points[1] == {"model.conv_features": (4, 16), "optimizer.learning_rate": 0.2}
  assert len(points) == 4
  zipped = hyper.zip([hyper.sweep("a", [1, 2]), hyper.sweep("b", [3, 4])])
  assert zipped == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
  assert hyper.chain(zipped, hyper.fixed("c", 5))[-1] == {"c": 5}
  assert sweep.point_name(points[1]) == "conv_features=4-16,learning_rate=0.2"
  assert sweep.point_name({"model.dropout_rate": 0.1, "data.dropout_rate": 0}) == \
      "model.dropout_rate=0.1,data.dropout_rate=0"
  with pytest.raises(UsageError, match="one length"):
    hyper.zip([hyper.sweep("a", [1]), hyper.sweep("b", [3, 4])])


@pytest.mark.integration  # Trains a run twice.
def test_reproduce_reports_an_exact_match(tiny_config, tmp_path):
  import cnnjax
  tiny_config.num_epochs = 1
  cnnjax.train_and_evaluate(tiny_config, tmp_path / "orig")
  report = reproduce.reproduce(tmp_path / "orig", log=lambda *_: None)
  assert report["exact"] and report["reproduction"] == str(tmp_path / "orig-repro")
  assert {r["metric"] for r in report["rows"]} >= {"test_accuracy", "train_loss", "step"}
  assert "exact match" in reproduce.format_report(report)
  changed = reproduce.compare_metrics([{"a": 1.0}], [{"a": 1.5}])
  assert changed == [{"metric": "a", "original": 1.0, "reproduced": 1.5, "max_abs_diff": 0.5,
                      "exact": False}]


def _experiment(tmp_path, data_dir):
  return write_experiment(tmp_path / "exp_tiny.py", data_dir, THREE_POINTS)


@pytest.mark.integration
def test_sweep_skips_finished_survives_failures_and_parallel_equals_serial(tiny_data_dir, tmp_path):
  experiment = sweep.load_experiment(_experiment(tmp_path, tiny_data_dir))
  base, points = experiment.base, experiment.points
  messages = []
  serial = sweep.run_sweep(base, points, tmp_path / "w1", log=messages.append)
  status = {r["run"]: r["status"] for r in serial.rows}
  assert status == {"conv_features=4-8": "finished", "conv_features=6-8": "finished",
                    "conv_features=4-8-8-8": "failed"}
  failed = {r["run"]: r for r in serial.rows}["conv_features=4-8-8-8"]
  assert "config.model.conv_features: 4 conv blocks" in failed["error"]

  messages.clear()
  again = sweep.run_sweep(base, points, tmp_path / "w1", log=messages.append)
  assert "conv_features=4-8: finished, skipped" in messages
  assert any(m.startswith("conv_features=4-8-8-8: failed before, skipped") for m in messages)
  assert [r["test_accuracy"] for r in again.rows] == [r["test_accuracy"] for r in serial.rows]

  sweep.run_sweep(base, points[:2], tmp_path / "w2", LocalLauncher(2), log=lambda *_: None)
  for name in ("conv_features=4-8", "conv_features=6-8"):
    one = (tmp_path / "w1" / name / "metrics.jsonl").read_text().splitlines()
    two = (tmp_path / "w2" / name / "metrics.jsonl").read_text().splitlines()
    strip = lambda l: {k: v for k, v in json.loads(l).items() if not k.endswith("seconds")
                       and k != "images_per_second"}
    assert [strip(l) for l in one] == [strip(l) for l in two]

  messages.clear()
  sweep.run_sweep(base, points, tmp_path / "w1", retry_failed=True, log=messages.append)
  assert any("retrying; the failed attempt is in" in m for m in messages)
  assert len(list((tmp_path / "w1" / ".failed").iterdir())) == 1


def test_aggregate_seed_puts_runs_that_differ_only_in_seed_in_one_row(tmp_path):
  accuracy = {(0.02, 0): 0.90, (0.02, 1): 0.92, (0.02, 2): 0.97, (0.1, 0): 0.80, (0.1, 1): 0.84}
  for (lr, seed), acc in accuracy.items():
    path = fake_run(tmp_path / f"learning_rate={lr},seed={seed}",
                    **{"optimizer.learning_rate": lr, "seed": seed})
    summary = json.loads((path / "summary.json").read_text())
    records.write_json(path / "summary.json", {**summary, "test_accuracy": acc})
  result = table.show([tmp_path], aggregate="seed")
  rows = {r["optimizer.learning_rate"]: r for r in result.rows}
  assert sorted(rows) == [0.02, 0.1] and "seed" not in [c for c in result.columns if "." in c]
  low, high = rows[0.02], rows[0.1]
  assert (low["n"], low["seed"], high["n"], high["seed"]) == (3, (0, 1, 2), 2, (0, 1))
  assert low["run"] == "learning_rate=0.02,seed=*"
  assert low["test_accuracy_mean"] == pytest.approx(0.93)
  assert low["test_accuracy_std"] == pytest.approx(np.std([0.90, 0.92, 0.97], ddof=1))
  assert high["test_accuracy_mean"] == pytest.approx(0.82)
  assert high["test_accuracy_std"] == pytest.approx(np.std([0.80, 0.84], ddof=1))
  header = result.to_csv().splitlines()[0].split(",")
  assert {"n", "test_accuracy_mean", "test_accuracy_std", "val_accuracy_mean"} <= set(header)
  shown = result.sort("test_accuracy", descending=True).select(
      ["optimizer.learning_rate", "n", "test_accuracy"])
  assert shown.to_markdown().splitlines()[2] == "| 0.02 | 3 | 93 ± 4 % |"
  assert shown.to_text().splitlines()[3].split() == ["0.1", "2", "82", "±", "3", "%"]
  assert [r["n"] for r in result.filter(["test_accuracy>0.85"]).rows] == [3]


@pytest.mark.parametrize("mean, std, percent, shown", [
    (0.9955, 0.0007095, True, "99.55 ± 0.07 %"),
    (0.9904, 0.001401, True, "99.0 ± 0.1 %"),
    (0.98733, 0.000962, True, "98.7 ± 0.1 %"),  # 0.0962 rounds up to 0.1
    (1.0, 0.0, True, "100 ± 0 %"),
    (8.667, 1.155, False, "9 ± 1"),
    (123.4, 12.0, False, "123 ± 12"),
    (0.5, None, False, "0.5"),
])
def test_a_mean_and_its_spread_are_rounded_to_what_the_spread_supports(mean, std, percent, shown):
  assert table.mean_std(mean, std, percent) == shown


@pytest.mark.integration
def test_sweep_seeds_repeats_every_point(capsys, tmp_path, tiny_data_dir):
  from cnnjax import cli
  assert hyper.with_seeds([{"a": 1}, {"a": 2}], 2) == [
      {"a": 1, "seed": 0}, {"a": 1, "seed": 1}, {"a": 2, "seed": 0}, {"a": 2, "seed": 1}]
  experiment = _experiment(tmp_path, tiny_data_dir)
  assert cli.main(["sweep", str(experiment), "--dry-run", "--seeds", "2",
                   "--root", str(tmp_path / "r")]) == 0
  names = [line.split()[0].split("/")[-1] for line in capsys.readouterr().out.splitlines()]
  assert names[:2] == ["conv_features=4-8,seed=0", "conv_features=4-8,seed=1"]
  assert len(names) == 6


def test_runs_that_predate_a_config_field_read_it_as_its_default(tmp_path):
  for seed in (0, 1):
    fake_run(tmp_path / f"seed={seed}", seed=seed)
  old = json.loads((tmp_path / "seed=0" / "config.json").read_text())
  del old["data"]["augment_rotate"]  # Written before the field existed (default 0).
  records.write_json(tmp_path / "seed=0" / "config.json", old)
  assert [r["n"] for r in table.show([tmp_path], aggregate="seed").rows] == [2]


@pytest.mark.parametrize("code, status, error", [
    (3, "running", None),  # It stopped with a checkpoint and said so itself.
    (-15, "interrupted", "stopped at once by SIGTERM; the next run resumes from its latest checkpoint"),
    (-12, "interrupted", "stopped at once by SIGUSR2; the next run resumes from its latest checkpoint"),
    (-9, "failed", "killed by SIGKILL; its log ends: epoch 1/3"),
    (1, "failed", "epoch 1/3"),
])
def test_a_points_exit_is_recorded_as_what_it_was(code, status, error, tmp_path):
  records.write_json(tmp_path / "summary.json", {"status": "running", "steps": 16})
  (tmp_path / point.LOG_FILE).write_text("resuming\nepoch 1/3\n\n")
  point.record_exit(tmp_path, code)
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert (summary["status"], summary.get("error"), summary["steps"]) == (status, error, 16)


def test_a_point_killed_before_its_first_record_reads_as_interrupted(tmp_path):
  point.record_exit(tmp_path, -2)
  assert read_run(tmp_path).status == "interrupted"
  point.record_exit(tmp_path, 1)  # A later failure does not overwrite a final status.
  assert read_run(tmp_path).status == "interrupted"
