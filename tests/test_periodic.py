"""The loop's "is it time?" decisions, in steps, against the epoch arithmetic they replace."""
import ml_collections

from cnnjax.train import periodic


def _config(num_epochs, eval_every, checkpoint_every):
  return ml_collections.ConfigDict({"num_epochs": num_epochs, "eval_every_epochs": eval_every,
                                    "checkpoint": {"every_epochs": checkpoint_every}})


def test_evaluations_and_checkpoints_fall_on_the_epochs_the_config_names():
  spe = 5
  periods = periodic.Periods.from_config(_config(7, 2, 3), spe)
  assert (periods.total_steps, periods.eval_every, periods.checkpoint_every) == (35, 10, 15)
  ends = [spe * (epoch + 1) for epoch in range(7)]
  evaluated = [s // spe for s in ends if periodic.itstime(s, periods.eval_every, 35)]
  checkpointed = [s // spe for s in ends if periodic.itstime(s, periods.checkpoint_every, 35)]
  assert evaluated == [2, 4, 6, 7]  # And the last epoch.
  assert checkpointed == [3, 6, 7]
  assert not periodic.itstime(3, 0, 35) and periodic.itstime(35, 0, 35)


def test_progress_line(monkeypatch, capsys):
  now = [100.0]
  monkeypatch.setattr(periodic.time, "time", lambda: now[0])
  progress = periodic.ProgressLine(10.0, periodic.Periods(20, 60, 20, 20), batch_size=8)
  progress.restart(20)
  now[0] = 105.0
  progress(30)
  assert capsys.readouterr().out == ""  # Not 10 s yet.
  now[0] = 110.0
  progress(40)  # 20 steps of 8 in 10 s; 20 steps left.
  assert capsys.readouterr().out == "epoch 2/3  step 20/20  16 img/s  eta 10s\n"
  now[0] = 125.0
  progress(41)  # 1 step in 15 s: 0.53 img/s, 19 steps left.
  assert capsys.readouterr().out == "epoch 3/3  step 1/20  1 img/s  eta 285s\n"
  periodic.ProgressLine(0, periodic.Periods(20, 60, 20, 20), 8)(41)
  assert capsys.readouterr().out == ""
