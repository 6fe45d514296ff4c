"""Benchmarks run by ``attnlab bench NAME`` (one module per benchmark, each with ``main(argv)``,
listed in attnlab.bench.cli)."""
