"""The commands that read what runs left behind: ``attnlab report``, ``runs``, ``ui``, ``eval``
and ``predict`` (``train``, ``claim`` and ``bench`` live with their packages). Each module has
``main(argv) -> int``; attnlab.cli's table names them."""
