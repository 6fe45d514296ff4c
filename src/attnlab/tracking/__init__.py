"""MLflow: the store, the run a training run logs into, its metric logger, run names, stale
runs, and the saved view of the runs table."""
