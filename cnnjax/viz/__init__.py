"""Looking inside trained runs and using them: images, plots, evaluation."""
