"""Where generated corpora and trained teachers live between runs."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV = "KDBENCH_CACHE"


def cache_root() -> Path:
    """`$KDBENCH_CACHE`, else the user's cache directory; one root for every cache."""
    root = Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("kdbench"))
    root.mkdir(parents=True, exist_ok=True)
    return root
