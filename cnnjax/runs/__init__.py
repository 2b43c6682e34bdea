"""Run directories: records, lock, metrics, checkpoints, and the file reads and atomic writes
they share (files)."""
