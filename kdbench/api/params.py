"""Declared hyper-parameters: how presets and `--set` overrides reach a plugin, checked
and typed in one place so every kind of plugin validates its settings the same way."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kdbench.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Param:
    """One declared hyper-parameter: presets and `--set` overrides are checked against it."""

    default: Any
    help: str
    type: type = float
    choices: tuple[Any, ...] | None = None
    item_type: type = str

    def coerce(self, key: str, value: Any) -> Any:
        """Turn a preset or command-line value into this parameter's type, or say why not."""
        if self.type is bool and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ConfigError(f"{key}: expected true or false, got {value!r}")
            value = lowered in {"true", "1", "yes"}
        elif self.type in (list, tuple) and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        try:
            coerced = self.type(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{key}: expected {self.type.__name__}, got {value!r}"
            ) from exc
        if self.type in (list, tuple):
            try:
                coerced = [self.item_type(item) for item in coerced]
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"{key}: expected a list of {self.item_type.__name__}, got {value!r}"
                ) from exc
        if self.choices is not None:
            items = coerced if isinstance(coerced, list) else [coerced]
            for item in items:
                if item not in self.choices:
                    allowed = ", ".join(map(str, self.choices))
                    raise ConfigError(f"{key}: {item!r} is not one of: {allowed}")
        return coerced


def resolve_params(
    owner: str, declared: Mapping[str, Param], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Defaults overlaid with `given`; an unknown name is an error naming the allowed ones."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        allowed = ", ".join(sorted(declared)) or "(none)"
        raise ConfigError(f"{owner}.{unknown[0]}: unknown parameter; allowed: {allowed}")
    resolved = {name: param.default for name, param in declared.items()}
    for name, value in given.items():
        resolved[name] = declared[name].coerce(f"{owner}.{name}", value)
    return resolved
