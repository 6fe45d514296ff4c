"""attnlab's Hydra plugins: ``hydra/sweeper=optuna`` (see optuna_sweeper.py)."""
