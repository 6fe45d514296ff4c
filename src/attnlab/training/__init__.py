"""One training run: ``attnlab train``, the Trainer it builds, optimizers and schedules,
regularization, callbacks, distributed and thread settings, checkpoints and resume."""
