"""The config core: the registry of components, config schemas and checks, the Dims contract,
one-line errors, metric names, and where the shipped configs are."""
