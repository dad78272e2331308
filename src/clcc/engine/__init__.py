"""The training engine: one loop, evaluation, prediction and checkpoints for every method."""
