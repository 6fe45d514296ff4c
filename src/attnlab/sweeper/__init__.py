"""A Hydra Sweeper on Optuna: search spaces, pruning through the storage, resume, MLflow parents."""
