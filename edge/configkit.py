"""Typed reading of config mappings, in one place.

Every config section (``model``, ``sources``, ``sinks``, ``pipeline``, ``power``, ``http``,
``service``, and the bundle manifest) is read through a :class:`Reader`, so that wrong types, values
out of range and unknown keys all fail the same way: a :class:`~edge.errors.ConfigError` naming the key
path (``power.idle_after``) and what was expected.

    r = Reader(data, "power")
    mode = r.str("mode", default=None)
    limit = r.float("thermal_limit_c", default=None, min=0)
    r.finish()          # unknown keys are errors

Durations accept numbers of seconds or strings such as ``30s``, ``5m``, ``1h``, ``250ms``.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from edge.errors import ConfigError

T = TypeVar("T")
_MISSING: Any = object()
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object, where: str) -> float:
    """Seconds from ``30``, ``2.5``, ``"30s"``, ``"5m"``, ``"250ms"`` or ``"1h"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration such as 30s or 5m, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{where}: a duration cannot be negative, got {value}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ConfigError(f"{where}: expected a duration such as 30s, 5m or 250ms, got {value!r}")


class Reader:
    """Reads typed fields from one mapping and remembers which keys were used."""

    def __init__(self, data: object, path: builtins.str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'config'}: expected a mapping of keys to values, got {type(data).__name__}")
        self.data: Mapping[builtins.str, Any] = data
        self.path = path
        self._used: set[builtins.str] = set()

    def where(self, key: builtins.str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: builtins.str) -> bool:
        return key in self.data

    def raw(self, key: builtins.str, default: Any = _MISSING) -> Any:
        self._used.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise ConfigError(f"{self.where(key)}: required key is missing")
            return default
        return self.data[key]

    def str(self, key: builtins.str, default: Any = _MISSING, choices: Sequence[builtins.str] | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, builtins.str):
            raise ConfigError(f"{self.where(key)}: expected a string, got {value!r}")
        if choices is not None and value not in choices:
            raise ConfigError(f"{self.where(key)}: {value!r} is not one of {', '.join(choices)}")
        return value

    def bool(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, builtins.bool):
            raise ConfigError(f"{self.where(key)}: expected true or false, got {value!r}")
        return value

    def int(
        self,
        key: builtins.str,
        default: Any = _MISSING,
        min: builtins.int | None = None,
        max: builtins.int | None = None,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, builtins.bool) or not isinstance(value, builtins.int):
            raise ConfigError(f"{self.where(key)}: expected an integer, got {value!r}")
        self._check_range(key, value, min, max)
        return value

    def float(
        self,
        key: builtins.str,
        default: Any = _MISSING,
        min: builtins.float | None = None,
        max: builtins.float | None = None,
    ) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, builtins.bool) or not isinstance(value, (builtins.int, builtins.float)):
            raise ConfigError(f"{self.where(key)}: expected a number, got {value!r}")
        self._check_range(key, value, min, max)
        return float(value)

    def duration(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return parse_duration(value, self.where(key))

    def list(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, builtins.list):
            raise ConfigError(f"{self.where(key)}: expected a list, got {value!r}")
        return value

    def section(self, key: builtins.str) -> Reader:
        """A reader for a nested mapping (an empty one when the key is absent)."""
        return Reader(self.raw(key, {}), self.where(key))

    def _check_range(
        self, key: builtins.str, value: builtins.float, lo: builtins.float | None, hi: builtins.float | None
    ) -> None:
        if lo is not None and value < lo:
            raise ConfigError(f"{self.where(key)}: must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise ConfigError(f"{self.where(key)}: must be <= {hi}, got {value}")

    def finish(self) -> None:
        """Fail on keys nobody read: typos must not be ignored."""
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            known = sorted(self._used)
            raise ConfigError(
                f"{self.where(unknown[0])}: unknown key" + (f" (known keys here: {', '.join(known)})" if known else "")
            )
