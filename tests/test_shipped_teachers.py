"""The quick preset's shipped teachers are what their recipe and manifest say they are.

The cheap half of `tools/train_teachers.py check` (the expensive half retrains them): each
file's sha256 and weights digest match the manifest, today's code and corpus still give the
manifest's teacher key for the recipe, and the weights reproduce the validation scores the
manifest recorded. A corpus change that would invalidate the teachers fails here, not in a
user's run.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from kdbench.config import load_config

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "train_teachers.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("train_teachers", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_quick_preset_loads_the_manifest_teachers_one_per_seed(tool) -> None:
    manifest = json.loads(tool.MANIFEST.read_text())
    config = load_config("quick")
    seeds = config.teacher["seeds"]
    assert sorted(map(int, manifest["teachers"])) == sorted(seeds) == manifest["recipe"]["seeds"]
    assert [Path(path).name for path in config.teacher["checkpoint"]] == [
        manifest["teachers"][str(seed)]["file"] for seed in seeds
    ]


def test_every_shipped_teacher_checks(tool, session_cache: Path) -> None:
    manifest = json.loads(tool.MANIFEST.read_text())
    for seed, entry in sorted(manifest["teachers"].items()):
        assert tool.check_teacher(int(seed), entry, session_cache) == []
        assert entry["platform"]["fingerprint"] and entry["commit"] and entry["command"]


def test_check_notices_a_changed_teacher(tool, session_cache: Path, tmp_path: Path) -> None:
    manifest = json.loads(tool.MANIFEST.read_text())
    seed, entry = next(iter(sorted(manifest["teachers"].items())))
    other = dict(entry, sha256="0" * 64)
    assert "sha256 differs" in " ".join(tool.check_teacher(int(seed), other, session_cache))
    shifted = dict(entry, valid_checked=[{**entry["valid_checked"][0], "value": -99.0}])
    assert "recomputed" in " ".join(tool.check_teacher(int(seed), shifted, session_cache))
