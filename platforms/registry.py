"""The targets this kit builds for and runs on: lookup by id, the full list, and ``auto``."""

from __future__ import annotations

import functools
from pathlib import Path

from edge.errors import ConfigError
from platforms.profile import Platform, load_profile

PROFILES_DIR = Path(__file__).with_name("profiles")
GENERIC_ID = "generic"

_FAMILY_ORDER = {"jetson": 0, "rtx": 1, "datacenter": 2, "cpu": 3}


@functools.lru_cache(maxsize=1)
def _load_all() -> dict[str, Platform]:
    paths = sorted(PROFILES_DIR.glob("*.yaml"))
    if not paths:
        raise ConfigError(f"{PROFILES_DIR}: no platform profiles found; reinstall the kit (package data is missing)")
    targets = [load_profile(path) for path in paths]
    targets.sort(key=_order)
    return {p.id: p for p in targets}


def _order(p: Platform) -> tuple[int, tuple[int, ...], float, int, str]:
    cc = tuple(int(x) for x in p.compute_capability.split(".")) if p.compute_capability else ()
    return (_FAMILY_ORDER.get(p.family, 9), cc, -(p.memory_gb or 0.0), -p.dla_cores, p.id)


def all_targets() -> tuple[Platform, ...]:
    """Every target profile, Jetson modules first, then RTX, datacenter GPUs and CPU."""
    return tuple(_load_all().values())


def target_ids() -> tuple[str, ...]:
    return tuple(_load_all())


def get_target(target_id: str) -> Platform:
    """The profile called ``target_id``; a :class:`ConfigError` listing the valid ids otherwise."""
    targets = _load_all()
    if not isinstance(target_id, str):
        raise ConfigError(
            f"target: expected a target id string, got {target_id!r}; valid targets: {', '.join(targets)}"
        )
    key = target_id.strip().lower()
    if key in targets:
        return targets[key]
    hint = ""
    if key in ("auto", GENERIC_ID):
        hint = f" ({key!r} is not a profile: use resolve_target for 'auto')"
    raise ConfigError(f"unknown target {target_id!r}{hint}; valid targets: {', '.join(targets)}")


def resolve_target(target: str, *, sysroot: str = "/", nvidia_smi: str | None = "nvidia-smi") -> Platform:
    """``"auto"``: the platform of this machine (:func:`platforms.detect`); anything else: :func:`get_target`.

    A machine that cannot be identified is an error, never a guess: pass an explicit target.
    ``sysroot`` and ``nvidia_smi`` go to :func:`platforms.detect` (for tests and cross-checks).
    """
    if target.strip().lower() != "auto":
        return get_target(target)
    from platforms.detect import detect

    machine = detect(sysroot, nvidia_smi=nvidia_smi)
    if machine.platform.id == GENERIC_ID:
        raise ConfigError(
            f"this machine could not be identified ({machine.reason}); "
            f"pass --target with one of: {', '.join(target_ids())}"
        )
    return machine.platform


def generic_platform(compute_capability: str | None = None) -> Platform:
    """The stand-in platform of a machine that matched no profile (never a build target)."""
    return Platform(
        id=GENERIC_ID,
        name="unidentified machine",
        family="generic",
        compute_capability=compute_capability,
        trt_flavour=None,
        precisions=("fp32",),
        sources={"precisions": "fp32 runs everywhere through ONNX Runtime's CPU provider"},
    )
