"""MkDocs hook: the site's home page is the README, so the front door is written once.

The README links into the site as ``docs/PAGE.md``; on the site the same page is ``PAGE.md``.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

README = Path(__file__).resolve().parent.parent / "README.md"


def on_files(files: Files, config) -> Files:
    """Add ``index.md``, made from the README with its ``docs/`` links made site-relative."""
    home = README.read_text(encoding="utf-8").replace("](docs/", "](")
    files.append(File.generated(config, "index.md", content=home))
    return files
