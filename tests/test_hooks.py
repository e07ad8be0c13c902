"""Every hook is documented where it is declared, in docs/plugins.md, and tested here.

Each `test_hook_<name>` registers a third-party object through that hook (a module loaded
with KDBENCH_PLUGINS, as an installed plugin would be) and checks kdbench uses it.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from kdbench import api
from kdbench.plugin.hookdocs import hook_functions, render_hook_reference
from kdbench.plugin.registry import make_registry

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _registry_with(monkeypatch, hook_name: str, obj) -> object:
    module = types.ModuleType(f"third_party_{hook_name}")

    def implementation(register):
        register.add(obj)

    setattr(module, hook_name, api.hookimpl(implementation))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setenv("KDBENCH_PLUGINS", module.__name__)
    return make_registry()


@pytest.mark.parametrize("name", [name for name, _ in hook_functions()])
def test_every_hook_is_documented_and_has_its_own_test(name):
    function = dict(hook_functions())[name]
    assert (function.__doc__ or "").strip(), f"{name} has no docstring"
    assert f"### `{name}(" in DOCS.read_text(), f"{name} missing from docs/plugins.md"
    assert f"test_hook_{name}" in globals(), f"{name} has no test_hook_{name}"


def test_the_docs_hook_reference_is_up_to_date():
    assert render_hook_reference() in DOCS.read_text(), "run: python -m kdbench.plugin.hookdocs"


def test_hook_kdbench_register_methods(monkeypatch):
    class Zero(api.KDMethod):
        name = "zero_kd"
        description = "no-op"
        needs_teacher = False

        def build(self, teacher_latents, student_latents):
            return api.KDLoss()

    registry = _registry_with(monkeypatch, "kdbench_register_methods", Zero)
    assert registry.get("methods", "zero_kd") is Zero


def test_hook_kdbench_register_pairs(monkeypatch):
    pair = api.ArchitecturePair(
        "tiny", "tiny pair", api.ModelSpec("unet", {"channels": [4]}),
        api.ModelSpec("unet", {"channels": [2]}), varies="width",
    )
    registry = _registry_with(monkeypatch, "kdbench_register_pairs", pair)
    assert registry.get("pairs", "tiny") is pair
    assert "tiny" in registry.select("pairs", "all")


def test_hook_kdbench_register_models(monkeypatch):
    class Identity(api.MaskDenoiser):
        def mask_network(self, magnitude):
            return torch.ones_like(magnitude), {"bottleneck": magnitude}

    family = api.ModelFamily("identity", "passes the input", lambda params: Identity())
    registry = _registry_with(monkeypatch, "kdbench_register_models", family)
    model = registry.get("models", "identity").build({})
    wave = torch.randn(1, 4096)
    assert torch.allclose(model.denoise(wave), wave, atol=1e-4)


def test_hook_kdbench_register_metrics(monkeypatch):
    class PeakRatio(api.Metric):
        name = "peak_ratio"
        description = "peak of estimate over peak of clean"

        def compute(self, clean, estimate, sample_rate):
            return float(np.abs(estimate).max() / np.abs(clean).max())

    registry = _registry_with(monkeypatch, "kdbench_register_metrics", PeakRatio())
    metric = registry.get("metrics", "peak_ratio")
    assert metric.compute(np.ones(4), 2 * np.ones(4), 16000) == 2.0


def test_hook_kdbench_register_datasets(monkeypatch, tmp_path):
    class Constant(api.Dataset):
        name = "constant"
        description = "one utterance of ones"

        def prepare(self, params, cache_dir):
            utterance = api.Utterance("u", np.ones(16000, np.float32), np.ones(16000, np.float32))
            splits = {"train": [utterance], "valid": [utterance], "test": [utterance]}
            return api.PreparedDataset("constant", "c0", 16000, splits)

    registry = _registry_with(monkeypatch, "kdbench_register_datasets", Constant())
    prepared = registry.get("datasets", "constant").prepare({}, tmp_path)
    assert prepared.identity == "c0" and len(prepared.splits["test"]) == 1


def test_hook_kdbench_register_executors(monkeypatch):
    class Reversed(api.Executor):
        name = "reversed"
        description = "runs items last to first"

        def run(self, work, items, jobs, params, lost):
            for item in reversed(items):
                yield work(item)

    registry = _registry_with(monkeypatch, "kdbench_register_executors", Reversed())
    executor = registry.get("executors", "reversed")
    assert list(executor.run(lambda x: x * 2, [1, 2, 3], 1, {}, lambda i, r: None)) == [6, 4, 2]
