"""Comparing, plotting, reproducing and sweeping runs; reads run directories only."""
