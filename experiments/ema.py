"""configs/mnist.py with and without a moving average of its weights (decay 0.999, about
the last two epochs' steps), the average delivered as chosen on validation; the raw
weights' test accuracy stays in each run's final_test_accuracy.

  cnnjax sweep experiments/ema.py --seeds 3
  cnnjax exp show runs/ema --aggregate seed --md \\
      --columns optimizer.ema_decay,n,test_accuracy,final_test_accuracy,final_ema_test_accuracy
"""

BASE = "configs/mnist.py"  # Relative to this file's folder or its parent.


def get_points():
  return [{}, {"optimizer.ema_decay": 0.999, "checkpoint.select": "ema_val_accuracy"}]
