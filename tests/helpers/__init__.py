"""Stand-ins shared by several test modules (``tests/`` is on sys.path under pytest)."""
