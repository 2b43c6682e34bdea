"""Training: state and optimizer, pure step functions, device mapping, the loop."""
