-- Run by the postgres image once, when its data volume is empty. The optuna database is
-- POSTGRES_DB; MLflow needs a database of its own, because Optuna and MLflow both keep their
-- schema version in a table named alembic_version.
CREATE DATABASE mlflow;
