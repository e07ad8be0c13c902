"""The plugin contract is true: built-ins use only what a third-party plugin can use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kdbench
from kdbench.api import resolve_params
from kdbench.plugin.registry import get_registry

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
PUBLIC = {"kdbench", "kdbench.api", "kdbench.errors"}


def _core_imports(source: Path) -> list[str]:
    """Every `kdbench...` module the file imports (plugins' own `kdbench_plugins` excluded)."""
    found = []
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            if node.module == "kdbench":
                modules = [f"kdbench.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found += [m for m in modules if m == "kdbench" or m.startswith("kdbench.")]
    return found


def test_built_in_plugins_import_only_the_public_api():
    offenders = {
        f"{path.relative_to(PLUGINS)}: {module}"
        for path in sorted(PLUGINS.rglob("*.py"))
        for module in _core_imports(path)
        if module not in PUBLIC and module != "kdbench.__version__"
    }
    assert not offenders, "plugins must import only kdbench.api / kdbench.errors:\n" + "\n".join(
        sorted(offenders)
    )


def test_the_rule_sees_a_private_import(tmp_path):
    private = tmp_path / "bad.py"
    private.write_text("from kdbench.run.store import Store\nimport kdbench.report.stats\n")
    assert _core_imports(private) == ["kdbench.run.store", "kdbench.report.stats"]


def test_every_public_api_name_resolves():
    import kdbench.api as api

    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert not missing and kdbench.__version__


def test_a_third_party_latent_method_built_from_the_api_tools_conforms():
    """The latent tools the built-ins use are API: a method written with them alone passes
    the conformance kit on every default shape case."""
    import torch.nn.functional as F

    from kdbench.api import (
        AlignedLatentLoss,
        KDMethod,
        Param,
        aligned_pairs,
        latents_param,
        match_param,
        resample_param,
    )
    from kdbench.testing import check_method

    class L1Latents(AlignedLatentLoss):
        def distance(self, z_s, z_t):
            return F.l1_loss(z_s, z_t)

    class L1Method(KDMethod):
        name = "l1_latents"
        description = "L1 between projected latents"
        params = {
            "weight": Param(1.0, "KD weight", float),
            "latents": latents_param(["bottleneck"]),
            "match": match_param(),
            "resample": resample_param(),
        }

        def build(self, teacher_latents, student_latents):
            pairs, aligners = aligned_pairs(self.hparams, teacher_latents, student_latents)
            return L1Latents(pairs, aligners, self.hparams["weight"])

    outcomes = check_method(L1Method)
    assert outcomes and set(outcomes.values()) == {"ok"}


SMALL = {
    "procedural": {"n_train": 2, "n_valid": 1, "n_test": 1, "seconds": 1.0, "seed": 7},
    "realspeech": {"snrs": [0.0], "per_cell": 1},
    "realspeech_dev": {"snrs": [5.0], "per_cell": 1},
}
"""Built-in datasets that say their identity without preparing, at settings cheap to prepare."""


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_dataset_identified_without_its_audio_is_identified_as_prepare_would(
    name: str, tmp_path: Path
) -> None:
    """`Dataset.identify` must equal `prepare(...).identity` (read commands find trials by
    it), and must build nothing in the cache."""
    plugin = get_registry().get("datasets", name)
    params = resolve_params(f"dataset.{name}", plugin.params, SMALL[name])
    empty = tmp_path / "empty"
    said = plugin.identify(params, empty)
    assert said is not None and not empty.exists()
    assert said == plugin.prepare(params, tmp_path / "cache").identity
    other = resolve_params(f"dataset.{name}", plugin.params, {**SMALL[name], "seed": 8})
    assert plugin.identify(other, empty) != said
