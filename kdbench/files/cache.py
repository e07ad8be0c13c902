"""Where generated corpora and trained teachers live between runs, and how entries are
written and checked.

Writes are atomic (a temporary file or folder beside the entry, flushed to disk, then one
rename), so a killed process or a full disk leaves the old entry or none, never a torn one.
An entry that fails its check when read anyway (a copied cache, a bit flip, another
program's torn write) is set aside as `<name>.corrupt-<time>` — kept for a post-mortem,
not deleted — and rebuilt once, with a warning: every entry is deterministic in its key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

import filelock
import platformdirs
import torch

from kdbench.errors import CorruptFile, KdbenchError

CACHE_ENV = "KDBENCH_CACHE"

log = logging.getLogger(__name__)

T = TypeVar("T")


def cache_root(create: bool = True) -> Path:
    """`$KDBENCH_CACHE`, else the user's cache directory; one root for every cache.
    `create=False` names it without making it: a command that only reads writes nothing."""
    root = Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("kdbench"))
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def _fsync_directory(folder: Path) -> None:
    """Make a rename in `folder` durable: without it a power cut can undo the rename."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


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
        _fsync_tree(staging)
        try:
            os.rename(staging, folder)
        except OSError:
            if not folder.is_dir():
                raise
        _fsync_directory(folder.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write` into a temporary file beside `path`, flushed to disk, then one rename:
    readers in other processes see the old file, no file, or the whole new one, and a
    write that fails (a full disk) leaves the old file as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
        _fsync_directory(path.parent)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def save_atomically(payload: object, path: Path) -> None:
    """`torch.save` through `write_atomically`."""
    write_atomically(path, lambda stream: torch.save(payload, stream))


def write_bytes_atomically(data: bytes, path: Path) -> None:
    """`data` through `write_atomically` (files shipped between the nodes of a cluster)."""
    write_atomically(path, lambda stream: stream.write(data))


def set_aside(path: Path, problem: Exception) -> Path:
    """Rename an entry that failed its check out of the way, with a warning; renamed, not
    deleted, so what went wrong can still be looked at."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}-{os.getpid()}")
    os.rename(path, aside)
    log.warning("%s; set aside as %s, building it again", problem, aside.name)
    return aside


def load_or_build(
    path: Path, load: Callable[[Path], T], build: Callable[[], None], lock: Path
) -> T:
    """The cache entry at `path`, read by `load`: built by `build` first if it is absent,
    and set aside and built again, once, if `load` finds that it fails its check (raises
    `CorruptFile`).

    Building runs under the file lock `lock`, and the entry is looked at again under it: a
    process that waited there while another built or repaired the same entry uses that
    entry, instead of building it a second time or setting the other's work aside. An
    entry that fails its check right after it was built is an error.
    """
    if path.exists():
        try:
            return load(path)
        except CorruptFile:
            pass
        except (KdbenchError, OSError):
            if path.exists():
                raise
            # Another process set the entry aside between the look and the read; it is
            # building it again, and the lock below waits for that.
    with filelock.FileLock(str(lock)):
        if os.path.lexists(path):
            try:
                return load(path)
            except CorruptFile as problem:
                set_aside(path, problem)
        build()
        try:
            return load(path)
        except CorruptFile as problem:
            raise CorruptFile(f"{problem} (right after it was built)") from problem
