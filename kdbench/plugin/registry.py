"""The plugin registry: a pluggy manager that loads entry points of group ``kdbench``.

Built-ins ship as entry points of this very distribution, so they load exactly as a
third-party plugin does. Set ``KDBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` to load only kdbench's
own distribution (a broken third-party plugin then cannot stop the tool), and
``KDBENCH_PLUGINS=mod1,mod2`` to add modules by import name.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
from collections.abc import Iterator, Mapping
from typing import Any

import pluggy

from kdbench.api.params import Param
from kdbench.errors import ConfigError, KdbenchError
from kdbench.plugin import hookspecs

ENTRY_POINT_GROUP = "kdbench"
DISABLE_AUTOLOAD_ENV = "KDBENCH_DISABLE_PLUGIN_AUTOLOAD"
EXTRA_PLUGINS_ENV = "KDBENCH_PLUGINS"
OWN_DISTRIBUTION = "kdbench"

KINDS = tuple(kind.name for kind in hookspecs.kinds())


@dataclasses.dataclass(frozen=True)
class Registered:
    """One registered object and the plugin that contributed it."""

    obj: Any
    plugin: str

    @property
    def name(self) -> str:
        return self.obj.name

    @property
    def description(self) -> str:
        return self.obj.description


class Register:
    """Collects the objects of one kind that plugins add through a hook, checking each one
    against the kind's declared type as it is added (tox 4 does the same with its typed
    register), so a mistake names its plugin and distribution at load."""

    def __init__(self, kind: hookspecs.Kind) -> None:
        self.kind = kind
        self.items: dict[str, Registered] = {}
        self.current_plugin = "?"
        self.current_distribution = "?"

    def _refuse(self, obj: Any, why: str) -> KdbenchError:
        return KdbenchError(
            f"plugin {self.current_plugin} (distribution {self.current_distribution}) "
            f"registered {obj!r} as one of the {self.kind.name}, but {why}"
        )

    def add(self, obj: Any) -> None:
        """Register `obj`: of the kind's type, with a `name` unique within the kind, a
        `description`, and, where it declares `params`, a mapping of names to `Param`."""
        kind = self.kind
        is_class = isinstance(obj, type)
        if kind.as_class and not (is_class and issubclass(obj, kind.base)):
            raise self._refuse(obj, f"{kind.name} must be {kind.describe()} (the class itself)")
        if not kind.as_class and (is_class or not isinstance(obj, kind.base)):
            raise self._refuse(obj, f"{kind.name} must be {kind.describe()}")
        for attribute in ("name", "description"):
            value = getattr(obj, attribute, None)
            if not isinstance(value, str) or not value.strip():
                raise self._refuse(obj, f"it has no non-empty string attribute {attribute!r}")
        params = getattr(obj, "params", {})
        if not isinstance(params, Mapping) or not all(
            isinstance(key, str) and isinstance(value, Param) for key, value in params.items()
        ):
            raise self._refuse(obj, "its `params` is not a mapping of names to kdbench.api.Param")
        if obj.name in self.items:
            raise KdbenchError(
                f"{kind.name[:-1]} {obj.name!r} is registered twice: by "
                f"{self.items[obj.name].plugin} and by {self.current_plugin}"
            )
        self.items[obj.name] = Registered(obj, self.current_plugin)


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


class Registry:
    """What the loaded plugins contribute, by kind and name."""

    def __init__(
        self, manager: pluggy.PluginManager, distributions: dict[str, tuple[str, str]]
    ) -> None:
        self.manager = manager
        self.distributions = distributions
        self._registers: dict[str, Register] = {}
        for kind in hookspecs.kinds():
            register = Register(kind)
            hook = getattr(manager.hook, hookspecs.HOOK_PREFIX + kind.name)
            for impl in reversed(hook.get_hookimpls()):
                register.current_plugin = impl.plugin_name
                register.current_distribution = distributions.get(
                    impl.plugin_name, ("(module)", "")
                )[0]
                impl.function(register=register)
            self._registers[kind.name] = register

    def all(self, kind: str) -> dict[str, Registered]:
        return dict(self._registers[kind].items)

    def get(self, kind: str, name: str) -> Any:
        """The object registered under `name`, or an error listing what is registered."""
        items = self._registers[kind].items
        if name not in items:
            allowed = ", ".join(sorted(items)) or "(none registered)"
            raise ConfigError(f"unknown {kind[:-1]} {name!r}; registered: {allowed}")
        return items[name].obj

    def names(self, kind: str) -> list[str]:
        return list(self._registers[kind].items)

    def select(self, kind: str, requested: list[str] | str) -> list[str]:
        """Expand `all` and comma lists into registered names, checking each one."""
        if isinstance(requested, str):
            requested = [part.strip() for part in requested.split(",") if part.strip()]
        if requested == ["all"]:
            return self.names(kind)
        for name in requested:
            self.get(kind, name)
        return list(dict.fromkeys(requested))

    def plugins(self) -> Iterator[PluginInfo]:
        """Each loaded plugin with the distribution that ships it and the hooks it implements."""
        for plugin_name, plugin in self.manager.list_name_plugin():
            hooks = tuple(
                hook.name
                for hook in self.manager.get_hookcallers(plugin) or []
                if hook.name.startswith("kdbench_")
            )
            distribution, version = self.distributions.get(plugin_name, ("(module)", ""))
            yield PluginInfo(plugin_name, distribution, version, hooks)


def _load_entry_points(
    manager: pluggy.PluginManager, only_own: bool
) -> dict[str, tuple[str, str]]:
    distributions: dict[str, tuple[str, str]] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        if only_own and (dist is None or dist.metadata["Name"] != OWN_DISTRIBUTION):
            continue
        if manager.get_plugin(entry_point.name) is not None or manager.is_blocked(
            entry_point.name
        ):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            owner = dist.metadata["Name"] if dist else "?"
            raise KdbenchError(
                f"plugin {entry_point.name!r} from {owner} failed to load: {exc!r}; set "
                f"{DISABLE_AUTOLOAD_ENV}=1 to run without third-party plugins"
            ) from exc
        manager.register(plugin, name=entry_point.name)
        if dist is not None:
            distributions[entry_point.name] = (dist.metadata["Name"], dist.version)
    return distributions


def _shipped_by(module_name: str) -> str:
    """Which installed distribution ships a module, in words, for an error message."""
    top_level = module_name.split(".")[0]
    owners = importlib.metadata.packages_distributions().get(top_level)
    return f"distribution {', '.join(owners)}" if owners else "in no installed distribution"


def make_registry() -> Registry:
    """Load entry points (and `KDBENCH_PLUGINS` modules) into a fresh registry."""
    manager = pluggy.PluginManager("kdbench")
    manager.add_hookspecs(hookspecs)
    only_own = os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("", "0")
    distributions = _load_entry_points(manager, only_own)
    for module_name in filter(None, os.environ.get(EXTRA_PLUGINS_ENV, "").split(",")):
        module_name = module_name.strip()
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise KdbenchError(
                f"plugin module {module_name!r} named in {EXTRA_PLUGINS_ENV} "
                f"({_shipped_by(module_name)}) failed to import: {exc!r}; remove it from "
                f"{EXTRA_PLUGINS_ENV} to run without it"
            ) from exc
        if manager.get_plugin(module_name) is None:
            manager.register(module, name=module_name)
    return Registry(manager, distributions)


_default: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, built on first use."""
    global _default
    if _default is None or reload:
        _default = make_registry()
    return _default
