"""The registry: built-ins arrive through entry points, like any third-party plugin."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest

from kdbench.api import ArchitecturePair, KDMethod, Metric, ModelSpec, Param, hookimpl
from kdbench.errors import ConfigError, KdbenchError
from kdbench.plugin import registry as registry_module
from kdbench.plugin.registry import make_registry

BUILT_INS = {
    "methods": {"none", "cosine", "fgspkd", "mse", "output", "attention", "similarity"},
    "pairs": {"width", "kernel", "depth", "width8", "width_depth"},
    "models": {"unet"},
    "metrics": {"pesq_wb", "stoi", "si_sdr"},
    "datasets": {"procedural", "folders", "voicebank", "mix"},
    "executors": {"local", "ray"},
}


def test_built_ins_come_from_entry_points_of_the_kdbench_distribution():
    registry = make_registry()
    for kind, names in BUILT_INS.items():
        assert names <= set(registry.names(kind)), kind
    plugins = {info.name: info for info in registry.plugins()}
    assert plugins["methods.cosine"].distribution == "kdbench"
    assert plugins["methods.cosine"].hooks == ("kdbench_register_methods",)
    group = {ep.name for ep in importlib.metadata.entry_points(group="kdbench")}
    assert {"methods.cosine", "pairs.unet", "executors.local"} <= group


def test_select_expands_all_and_comma_lists_and_rejects_unknown_names():
    registry = make_registry()
    assert registry.select("pairs", "all") == registry.names("pairs")
    assert registry.select("methods", "cosine, none") == ["cosine", "none"]
    with pytest.raises(ConfigError, match="unknown method 'cosin'.*registered: .*cosine"):
        registry.select("methods", ["cosin"])


def _fake_entry_point(monkeypatch, module_name: str, dist_name: str) -> None:
    real = importlib.metadata.entry_points

    class FakeDist:
        metadata = {"Name": dist_name}
        version = "9.9"

    entry = importlib.metadata.EntryPoint(name="thirdparty", value=module_name, group="kdbench")
    entry = entry._for(FakeDist())  # type: ignore[attr-defined]

    def entry_points(**kwargs):
        found = list(real(**kwargs))
        return [*found, entry] if kwargs.get("group") == "kdbench" else found

    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points", entry_points)


def test_a_broken_third_party_plugin_names_itself_and_can_be_disabled(monkeypatch):
    broken = types.ModuleType("broken_kd_plugin")
    monkeypatch.setitem(sys.modules, "broken_kd_plugin", None)  # import fails
    _fake_entry_point(monkeypatch, broken.__name__, "broken-dist")
    with pytest.raises(KdbenchError, match="'thirdparty' from broken-dist failed to load"):
        make_registry()
    monkeypatch.setenv("KDBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "cosine" in make_registry().names("methods")


def test_a_third_party_plugin_registers_through_the_same_hook(monkeypatch):
    module = types.ModuleType("third_party_kd")

    class Halved(KDMethod):
        name = "halved"
        description = "a third-party method"

    @hookimpl
    def kdbench_register_methods(register):
        register.add(Halved)

    module.kdbench_register_methods = kdbench_register_methods
    monkeypatch.setitem(sys.modules, "third_party_kd", module)
    _fake_entry_point(monkeypatch, "third_party_kd", "kd-extra")
    registry = make_registry()
    assert registry.get("methods", "halved") is Halved
    info = {p.name: p for p in registry.plugins()}["thirdparty"]
    assert (info.distribution, info.version) == ("kd-extra", "9.9")


def test_duplicate_names_are_an_error_naming_both_plugins(monkeypatch):
    module = types.ModuleType("dup_kd")

    class Cosine(KDMethod):
        name = "cosine"
        description = "again"

    @hookimpl
    def kdbench_register_methods(register):
        register.add(Cosine)

    module.kdbench_register_methods = kdbench_register_methods
    monkeypatch.setitem(sys.modules, "dup_kd", module)
    monkeypatch.setenv("KDBENCH_PLUGINS", "dup_kd")
    with pytest.raises(KdbenchError, match="'cosine' is registered twice: by (methods.cosine and by dup_kd|dup_kd and by methods.cosine)"):
        make_registry()


def _plugin_adding(monkeypatch, kind: str, obj: object) -> None:
    """A module plugin whose hook for `kind` registers `obj`, loaded by KDBENCH_PLUGINS."""
    module = types.ModuleType("wrong_kd")

    @hookimpl(specname=f"kdbench_register_{kind}")
    def register_it(register):
        register.add(obj)

    module.register_it = register_it
    monkeypatch.setitem(sys.modules, "wrong_kd", module)
    monkeypatch.setenv("KDBENCH_PLUGINS", "wrong_kd")


class _Method(KDMethod):
    name = "proper"
    description = "a well-formed method"


class _Metric(Metric):
    name = "proper_metric"
    description = "a well-formed metric"


_SPEC = ModelSpec("unet", {})


@pytest.mark.parametrize(
    ("kind", "obj", "why"),
    [
        ("methods", _Method(), r"must be a kdbench.api.KDMethod subclass \(the class itself\)"),
        ("methods", int, "must be a kdbench.api.KDMethod subclass"),
        ("metrics", _Metric, "must be a kdbench.api.Metric instance"),
        ("pairs", _Metric(), "must be a kdbench.api.ArchitecturePair instance"),
        ("pairs", ArchitecturePair("", "empty name", _SPEC, _SPEC, "w"), "attribute 'name'"),
        (
            "methods",
            type("NoDescription", (KDMethod,), {"name": "nodesc"}),
            "attribute 'description'",
        ),
        (
            "methods",
            type("BadParams", (KDMethod,), {"name": "bp", "description": "d", "params": {"w": 1}}),
            "not a mapping of names to kdbench.api.Param",
        ),
    ],
)
def test_a_wrong_registration_fails_at_load_naming_the_plugin(monkeypatch, kind, obj, why):
    _plugin_adding(monkeypatch, kind, obj)
    with pytest.raises(KdbenchError, match=rf"plugin wrong_kd \(distribution \(module\)\).*{why}"):
        make_registry()


def test_a_well_formed_registration_loads(monkeypatch):
    _plugin_adding(monkeypatch, "methods", _Method)
    assert make_registry().get("methods", "proper") is _Method


def test_a_plugin_module_that_fails_to_import_is_named_with_the_way_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "broken_module_plugin", None)
    monkeypatch.setenv("KDBENCH_PLUGINS", "broken_module_plugin")
    with pytest.raises(KdbenchError, match="'broken_module_plugin' named in KDBENCH_PLUGINS"):
        make_registry()


def test_kinds_are_the_hooks_that_register_them():
    from kdbench.plugin import hookspecs
    from kdbench.plugin.registry import KINDS

    declared = [name.removeprefix("kdbench_register_") for name in vars(hookspecs)
                if name.startswith("kdbench_register_")]
    assert list(KINDS) == declared == list(BUILT_INS)
    assert Param  # the typed declaration the registry checks `params` against
