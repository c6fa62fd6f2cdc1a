"""Training: the train state and optimizers, learning-rate and KL schedules, named keys,
the compiled epoch, the one loop every regime runs, and model selection."""
