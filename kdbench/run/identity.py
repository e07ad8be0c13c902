"""Stable ids: a hash of everything that changes a result."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kdbench import RESULT_VERSION


def stable_id(kind: str, content: Any, length: int = 16) -> str:
    """A short sha256 of `content` (JSON, sorted keys) with the result version mixed in."""
    text = json.dumps(
        {"kind": kind, "result_version": RESULT_VERSION, "content": content},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks (checkpoints can be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
