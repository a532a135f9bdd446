"""Training: the loop, its objective (loss for the task), metrics, optimizers and checkpoints."""
