"""Data: synthetic sets, augmentation, the train/validation split and the rows a run fits on."""
