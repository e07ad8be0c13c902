"""Where generated corpora and trained teachers live between runs."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import torch

CACHE_ENV = "KDBENCH_CACHE"


def cache_root() -> Path:
    """`$KDBENCH_CACHE`, else the user's cache directory; one root for every cache."""
    root = Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("kdbench"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def staged_directory(folder: Path) -> Iterator[Path]:
    """A staging folder beside `folder` that becomes `folder` in one rename when the block
    ends without error, so a killed or failed write never leaves a half-written cache. If
    another process published the same folder first, its copy is kept: same settings,
    same content."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    staging.chmod(0o755)  # mkdtemp's private mode would otherwise hide a shared cache
    try:
        yield staging
        try:
            os.rename(staging, folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_atomically(payload: object, path: Path) -> None:
    """`torch.save` to a temporary file beside `path`, then one rename: readers in other
    processes see the old file, no file, or the whole new one, never a torn write."""
    with _replacing(path) as temp:
        torch.save(payload, temp)


def write_bytes_atomically(data: bytes, path: Path) -> None:
    """`data` into `path` the same all-or-nothing way (files shipped between machines)."""
    with _replacing(path) as temp:
        Path(temp).write_bytes(data)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[str]:
    """A temporary file beside `path` that replaces it in one rename if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield temp
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
