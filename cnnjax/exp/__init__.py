"""Experiments over many runs: sweeps that launch them (sweep, hyper, point, launchers/:
local processes, Ray, SLURM) and the commands that read their run directories back
(table: exp show and diff; plot; reproduce, which also trains the run again)."""
