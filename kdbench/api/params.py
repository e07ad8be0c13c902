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
    at_least: float | None = None
    """Smallest allowed value (of each item, for a list): a setting out of range would not
    fail, it would run and record a meaningless result (0 steps: an untrained student)."""
    above: float | None = None
    """Exclusive lower bound, for settings where 0 itself is meaningless (a learning rate)."""
    at_most: float | None = None
    """Largest allowed value (a fraction's 1)."""

    def __post_init__(self) -> None:
        bounded = any(bound is not None for bound in (self.at_least, self.above, self.at_most))
        numeric = self.item_type if self.type in (list, tuple) else self.type
        if bounded and numeric not in (int, float):
            raise TypeError(f"Param({self.help!r}): at_least/above/at_most need an int or float value")

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
        items = coerced if isinstance(coerced, list) else [coerced]
        if self.choices is not None:
            for item in items:
                if item not in self.choices:
                    allowed = ", ".join(map(str, self.choices))
                    raise ConfigError(f"{key}: {item!r} is not one of: {allowed}")
        for item in items:
            self._check_bounds(key, item)
        return coerced

    def _check_bounds(self, key: str, item: Any) -> None:
        bounded = any(bound is not None for bound in (self.at_least, self.above, self.at_most))
        if bounded and item != item:  # NaN passes every comparison, so no bound would hold
            raise ConfigError(f"{key}: must be a number, got {item!r}")
        if self.at_least is not None and item < self.at_least:
            raise ConfigError(f"{key}: must be >= {self.at_least:g}, got {item!r}")
        if self.above is not None and item <= self.above:
            raise ConfigError(f"{key}: must be > {self.above:g}, got {item!r}")
        if self.at_most is not None and item > self.at_most:
            raise ConfigError(f"{key}: must be <= {self.at_most:g}, got {item!r}")


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
