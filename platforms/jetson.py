"""Jetson identification from files: ``/etc/nv_tegra_release`` and ``/proc/device-tree``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from platforms.profile import Platform

_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class JetPackRow:
    """One row of docs/platforms.md's JetPack table: L4T releases -> JetPack, CUDA and TensorRT."""

    l4t_from: tuple[int, ...]
    l4t_to: tuple[int, ...]
    jetpack: str
    cuda: str
    tensorrt: str


# docs/platforms.md "How detection works": JetPack | L4T | CUDA | TensorRT.
JETPACK_TABLE = (
    JetPackRow((35, 2), (35, 6, 99), "5.1.x", "11.4", "8.5.2"),
    JetPackRow((36, 2), (36, 3, 99), "6.0", "12.2", "8.6.2"),  # 36.2: JetPack 6.0 Developer Preview
    JetPackRow((36, 4, 0), (36, 5, 0), "6.1/6.2.x", "12.6", "10.3"),
    JetPackRow((38, 2), (38, 2, 99), "7.0", "13.0", "10.13"),
    JetPackRow((38, 4), (38, 4, 99), "7.1", "13.0", "10.13"),
    JetPackRow((39, 2), (39, 2, 99), "7.2", "13.2", "10.16"),
)
# Exact JetPack releases of single L4T versions (NVIDIA JetPack release notes), refining the ranges above.
JETPACK_EXACT = {
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
}
SOCS = {
    "tegra234": "Jetson Orin (tegra234, sm_87)",
    "tegra264": "Jetson Thor (tegra264, sm_110)",
    "tegra194": "Jetson Xavier (tegra194, sm_72)",
    "tegra210": "Jetson Nano/TX1 (tegra210, sm_53)",
    "tegra186": "Jetson TX2 (tegra186, sm_62)",
}


def parse_tegra_release(text: str) -> str | None:
    """``"# R36 (release), REVISION: 4.3, ..."`` -> ``"36.4.3"``; None when the line is not there."""
    m = _RELEASE.search(text)
    if not m:
        return None
    parts = [m.group(1), *m.group(2).split(".")]
    while len(parts) < 3:
        parts.append("0")
    return ".".join(parts)


def jetpack_for(l4t: str) -> JetPackRow | None:
    """The table row of an L4T version, with the exact JetPack release where one is known."""
    try:
        key = tuple(int(p) for p in l4t.split("."))
    except ValueError:
        return None
    for row in JETPACK_TABLE:
        if row.l4t_from <= key <= row.l4t_to:
            exact = JETPACK_EXACT.get(l4t)
            if exact is None:
                return row
            return JetPackRow(row.l4t_from, row.l4t_to, exact, row.cuda, row.tensorrt)
    return None


def read_dt_strings(path: Path) -> list[str]:
    """A device-tree property file: NUL-separated strings (``compatible``) or one string (``model``)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return []
    return [s.strip() for s in raw.decode("utf-8", "replace").split("\0") if s.strip()]


@dataclass(frozen=True)
class ModuleMatch:
    platform: Platform | None
    super_flash: bool
    reason: str


def _parts(compatible: Sequence[str]) -> list[str]:
    """``["nvidia,p3768-0000+p3767-0005-super", "nvidia,tegra234"]`` -> ``["p3768-0000", "p3767-0005-super", "tegra234"]``."""
    parts: list[str] = []
    for entry in compatible:
        for part in entry.split("+"):
            part = part.strip().lower()
            part = part.split(",", 1)[1] if "," in part else part
            if part:
                parts.append(part)
    return parts


def match_module(compatible: Sequence[str], targets: Sequence[Platform]) -> ModuleMatch:
    """The one Jetson profile whose part numbers appear in ``compatible``, or None with the reason why."""
    shown = " ".join(compatible)
    by_part: dict[str, Platform] = {}
    for target in targets:
        for entry in target.compatible:
            for part in _parts([entry]):
                by_part[part] = target
    parts = _parts(compatible)
    super_flash = any(p.endswith("-super") for p in parts)
    matched: dict[str, Platform] = {}
    matched_parts: list[str] = []
    for part in parts:
        base = part.removesuffix("-super")
        if base in by_part:
            matched.setdefault(by_part[base].id, by_part[base])
            matched_parts.append(part)
    if len(matched) == 1:
        platform = next(iter(matched.values()))
        flash = " (Super flash)" if super_flash else ""
        return ModuleMatch(
            platform, super_flash, f"device-tree compatible '{shown}' names module {matched_parts[0]}{flash}"
        )
    if matched:
        names = ", ".join(sorted(matched))
        return ModuleMatch(None, super_flash, f"device-tree compatible '{shown}' matches several modules ({names})")
    socs = [SOCS[p] for p in parts if p in SOCS]
    if socs and "tegra234" not in parts:
        return ModuleMatch(
            None, super_flash, f"{socs[0]} is not a target of this kit (device-tree compatible '{shown}')"
        )
    if socs:
        return ModuleMatch(None, super_flash, f"an Orin SoC (tegra234) whose module in '{shown}' is in no profile")
    return ModuleMatch(None, super_flash, f"device-tree compatible '{shown}' names no known Jetson module")


def mem_total_gib(sysroot: Path) -> float | None:
    """``MemTotal`` from ``<sysroot>/proc/meminfo`` in GiB, or None."""
    try:
        text = (sysroot / "proc/meminfo").read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.MULTILINE)
    return int(m.group(1)) / (1024 * 1024) if m else None
