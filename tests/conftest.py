"""Shared fixtures: one cache for the whole session, so the tiny corpus and teacher that
several end-to-end tests need are generated once, as they would be for a real user."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kdbench-cache")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models are slower with thread contention on a shared 2-core runner."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
