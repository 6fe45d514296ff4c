"""Pure PyTorch models: no Lightning, no data, no config system."""
