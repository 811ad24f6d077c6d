"""Training: the config, the train loop and its backends, the objective, merging, the run folder."""
