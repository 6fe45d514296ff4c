"""attnlab: runnable, comparable experiments on attention, Transformers, residual nets and norms."""

__version__ = "0.1.0"
