"""Target profiles: the data model and the validating loader for ``platforms/profiles/<id>.yaml``.

A profile is data, not code: every fact sits beside its source (``sources``), and facts that the
sources leave open are listed in ``unverified`` so that code reads the real value from the device
when it can. Loading is strict: a missing key, a wrong type or an unknown key is a
:class:`~edge.errors.ConfigError` naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge.errors import ConfigError

FAMILIES = ("jetson", "rtx", "datacenter", "cpu", "generic")
FLAVOURS = ("tensorrt", "tensorrt-rtx")
PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "int8", "fp8", "fp4")

# Facts every profile must give a source for (the rest are optional details).
SOURCED_FACTS = (
    "compute_capability",
    "precisions",
    "trt_flavour",
    "dla_cores",
    "memory_gb",
    "power_modes",
    "default_power_mode",
    "default_workspace_mib",
    "compatible",
)


@dataclass(frozen=True)
class PowerMode:
    """One nvpmodel mode: its numeric ``id`` on this module and flash, and its ``name``."""

    id: int
    name: str

    def __str__(self) -> str:
        return f"{self.id}={self.name}"


@dataclass(frozen=True)
class Platform:
    """One deployment target (or the ``generic`` stand-in for a machine that could not be identified).

    ``power_modes`` are the nvpmodel modes of a standard flash, ``power_modes_super`` those of a
    Super flash (JetPack 6.2+, empty where the module has none). Mode ids differ per module and per
    flash: address modes by name and resolve the id on the device.
    """

    id: str
    name: str
    family: str
    compute_capability: str | None
    trt_flavour: str | None
    precisions: tuple[str, ...]
    dla_cores: int = 0
    memory_gb: float | None = None
    power_modes: tuple[PowerMode, ...] = ()
    power_modes_super: tuple[PowerMode, ...] = ()
    default_power_mode: str | None = None
    default_power_mode_super: str | None = None
    default_workspace_mib: int = 0
    compatible: tuple[str, ...] = ()
    gpus: tuple[str, ...] = ()
    cuda_cores: int | None = None
    tensor_cores: int | None = None
    memory_bandwidth_gbs: float | None = None
    notes: str = field(default="", repr=False)
    sources: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False, repr=False)
    unverified: tuple[str, ...] = ()

    @property
    def is_jetson(self) -> bool:
        return self.family == "jetson"

    @property
    def sm(self) -> str | None:
        """``"sm87"`` for compute capability ``"8.7"``."""
        return None if self.compute_capability is None else "sm" + self.compute_capability.replace(".", "")

    def supports(self, precision: str) -> bool:
        return precision in self.precisions

    def modes(self, super_flash: bool = False) -> tuple[PowerMode, ...]:
        """The nvpmodel modes of a standard (``super_flash=False``) or Super flash."""
        return self.power_modes_super if super_flash else self.power_modes

    def default_mode(self, super_flash: bool = False) -> str | None:
        """Name of the mode a fresh flash boots in (check ``unverified`` before relying on it)."""
        return self.default_power_mode_super if super_flash else self.default_power_mode

    def power_mode(self, name: str, super_flash: bool = False) -> PowerMode | None:
        """The mode called ``name`` (case-insensitive) in the given flash, or None."""
        for mode in self.modes(super_flash):
            if mode.name.lower() == name.lower():
                return mode
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "family": self.family,
            "compute_capability": self.compute_capability,
            "trt_flavour": self.trt_flavour,
            "precisions": list(self.precisions),
            "dla_cores": self.dla_cores,
            "memory_gb": self.memory_gb,
            "power_modes": {m.id: m.name for m in self.power_modes},
            "power_modes_super": {m.id: m.name for m in self.power_modes_super},
            "default_power_mode": self.default_power_mode,
            "default_power_mode_super": self.default_power_mode_super,
            "default_workspace_mib": self.default_workspace_mib,
            "compatible": list(self.compatible),
            "gpus": list(self.gpus),
            "cuda_cores": self.cuda_cores,
            "tensor_cores": self.tensor_cores,
            "memory_bandwidth_gbs": self.memory_bandwidth_gbs,
            "notes": self.notes,
            "sources": dict(self.sources),
            "unverified": list(self.unverified),
        }


_REQUIRED = ("id", "name", "family", "compute_capability", "trt_flavour", "precisions", "sources")
_NULLABLE = ("compute_capability", "trt_flavour")
_OPTIONAL = (
    "dla_cores",
    "memory_gb",
    "power_modes",
    "power_modes_super",
    "default_power_mode",
    "default_power_mode_super",
    "default_workspace_mib",
    "compatible",
    "gpus",
    "cuda_cores",
    "tensor_cores",
    "memory_bandwidth_gbs",
    "notes",
    "unverified",
)
FACTS = tuple(k for k in _REQUIRED + _OPTIONAL if k not in ("id", "sources", "unverified"))


class _Check:
    """Small typed reader over one profile mapping (``platforms`` cannot use ``edge.configkit``)."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def fail(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.where}: {key}: {what}")

    def get(self, key: str, types: tuple[type, ...], default: Any = None) -> Any:
        if key not in self.data:
            if key in _REQUIRED:
                raise self.fail(key, "required key is missing")
            return default
        value = self.data[key]
        if value is None:
            if key in _REQUIRED and key not in _NULLABLE:
                raise self.fail(key, "must not be null")
            return default
        if isinstance(value, bool) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise self.fail(key, f"expected {names}, got {value!r}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        items = self.get(key, (list,), [])
        if not all(isinstance(i, str) and i for i in items):
            raise self.fail(key, f"expected a list of non-empty strings, got {items!r}")
        return tuple(items)

    def modes(self, key: str) -> tuple[PowerMode, ...]:
        raw = self.get(key, (dict,), {})
        modes = []
        for mode_id, name in raw.items():
            if isinstance(mode_id, bool) or not isinstance(mode_id, int) or mode_id < 0:
                raise self.fail(key, f"mode ids must be integers >= 0, got {mode_id!r}")
            if not isinstance(name, str) or not name:
                raise self.fail(key, f"mode {mode_id} needs a name, got {name!r}")
            modes.append(PowerMode(mode_id, name))
        names = [m.name for m in modes]
        if len(set(names)) != len(names):
            raise self.fail(key, f"mode names repeat: {names}")
        return tuple(sorted(modes, key=lambda m: m.id))


def parse_profile(data: object, where: str) -> Platform:
    """Validate one profile mapping (from a YAML file named ``where``) into a :class:`Platform`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of profile keys, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_REQUIRED + _OPTIONAL)}")
    c = _Check(data, where)
    family = c.get("family", (str,))
    if family not in FAMILIES:
        raise c.fail("family", f"{family!r} is not one of {', '.join(FAMILIES)}")
    cc = c.get("compute_capability", (str,))
    if cc is not None and not _is_cc(cc):
        raise c.fail("compute_capability", f'expected a string such as "8.7", got {cc!r}')
    flavour = c.get("trt_flavour", (str,))
    if flavour is not None and flavour not in FLAVOURS:
        raise c.fail("trt_flavour", f"{flavour!r} is not one of {', '.join(FLAVOURS)} (or null)")
    precisions = c.strings("precisions")
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise c.fail("precisions", f"{bad or precisions} not valid; use some of {', '.join(PRECISIONS)}")
    memory = c.get("memory_gb", (int, float))
    bandwidth = c.get("memory_bandwidth_gbs", (int, float))
    platform = Platform(
        id=c.get("id", (str,)),
        name=c.get("name", (str,)),
        family=family,
        compute_capability=cc,
        trt_flavour=flavour,
        precisions=precisions,
        dla_cores=_non_negative(c, "dla_cores", 0),
        memory_gb=None if memory is None else float(memory),
        power_modes=c.modes("power_modes"),
        power_modes_super=c.modes("power_modes_super"),
        default_power_mode=c.get("default_power_mode", (str,)),
        default_power_mode_super=c.get("default_power_mode_super", (str,)),
        default_workspace_mib=_non_negative(c, "default_workspace_mib", 0),
        compatible=c.strings("compatible"),
        gpus=c.strings("gpus"),
        cuda_cores=c.get("cuda_cores", (int,)),
        tensor_cores=c.get("tensor_cores", (int,)),
        memory_bandwidth_gbs=None if bandwidth is None else float(bandwidth),
        notes=c.get("notes", (str,), ""),
        sources=_sources(c),
        unverified=c.strings("unverified"),
    )
    _check_consistency(platform, c)
    return platform


# libyaml's safe loader when PyYAML was built with it (same documents and types, ~10x faster: every CLI
# command that resolves a target parses all profiles); the pure-Python safe loader otherwise.
_SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_profile(path: Path) -> Platform:
    """Read and validate one ``<id>.yaml`` profile; its ``id`` must match the file name."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the platform profile: {exc}") from exc
    platform = parse_profile(data, str(path))
    if platform.id != path.stem:
        raise ConfigError(f"{path}: id {platform.id!r} does not match the file name; rename one of them")
    return platform


def _is_cc(value: str) -> bool:
    major, _, minor = value.partition(".")
    return major.isdigit() and minor.isdigit()


def _non_negative(c: _Check, key: str, default: int) -> int:
    value: int = c.get(key, (int,), default)
    if value < 0:
        raise c.fail(key, f"must be >= 0, got {value}")
    return value


def _sources(c: _Check) -> dict[str, str]:
    raw = c.get("sources", (dict,))
    for fact, text in raw.items():
        if fact not in FACTS:
            raise c.fail("sources", f"{fact!r} is not a profile fact; facts: {', '.join(FACTS)}")
        if not isinstance(text, str) or not text.strip():
            raise c.fail(f"sources.{fact}", f"expected a non-empty string naming the source, got {text!r}")
    return dict(raw)


def _check_consistency(p: Platform, c: _Check) -> None:
    missing = [f for f in SOURCED_FACTS if f not in p.sources]
    if missing:
        raise c.fail("sources", f"no source given for {', '.join(missing)}")
    for fact in p.unverified:
        if fact not in FACTS:
            raise c.fail("unverified", f"{fact!r} is not a profile fact; facts: {', '.join(FACTS)}")
        if "UNVERIFIED" not in p.sources.get(fact, ""):
            raise c.fail("unverified", f"{fact!r} is listed, but sources.{fact} does not say 'UNVERIFIED: why'")
    for fact, text in p.sources.items():
        if "UNVERIFIED" in text and fact not in p.unverified:
            raise c.fail("unverified", f"sources.{fact} says UNVERIFIED: list {fact!r} under unverified too")
    for flash, default in ((False, p.default_power_mode), (True, p.default_power_mode_super)):
        if default is not None and p.power_mode(default, flash) is None:
            key = "default_power_mode_super" if flash else "default_power_mode"
            names = [m.name for m in p.modes(flash)]
            raise c.fail(key, f"{default!r} is not one of the modes {names}")
    if p.family == "jetson" and not p.compatible:
        raise c.fail("compatible", "a Jetson profile needs the device-tree compatible ids that identify it")
    if p.trt_flavour is not None and p.compute_capability is None:
        raise c.fail("compute_capability", f"a {p.trt_flavour} target needs a compute capability")
    if "fp32" not in p.precisions:
        raise c.fail("precisions", "every target runs fp32; list it")
