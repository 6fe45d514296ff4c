"""The base every wing may import: the registry of components, config schemas and checks, the
Dims contract, one-line errors, metric names, where the shipped configs are, and figures."""
