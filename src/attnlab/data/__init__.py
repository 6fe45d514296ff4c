"""Data: generators and LightningDataModules. Nothing here knows of models or tasks."""
