"""Run directories: records, lock, metrics, checkpoints."""
