"""``detect()``: which target is this machine, and which versions does it carry.

Order: a Jetson is recognised from its files (``/etc/nv_tegra_release``, ``/proc/device-tree``);
otherwise discrete GPUs are asked through NVML, then ``nvidia-smi``; no GPU means ``cpu``. Anything
recognised only in part is the ``generic`` platform with a ``reason`` saying exactly what was seen:
never a silent guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ConfigError
from platforms import gpu as gpu_mod
from platforms import jetson
from platforms.profile import Platform
from platforms.registry import all_targets, generic_platform, get_target
from platforms.versions import cuda_toolkit_version, package_version

# p3701-0000 (the AGX Orin developer-kit module) shipped with 32 GB early on and 64 GB later.
_DEVKIT_AGX = "p3701-0000"
_AGX_32GB_BELOW_GIB = 48.0


@dataclass(frozen=True)
class Machine:
    """What :func:`detect` found. Versions are None when the thing is not installed or not readable."""

    platform: Platform
    reason: str
    l4t_version: str | None = None
    jetpack_version: str | None = None
    cuda_version: str | None = None
    tensorrt_version: str | None = None
    tensorrt_rtx_version: str | None = None
    gpu_name: str | None = None
    compute_capability: str | None = None
    driver_version: str | None = None
    super_flash: bool = False
    gpu_count: int = 0
    model: str | None = None
    gpus: tuple[gpu_mod.GpuInfo, ...] = field(default=())
    gpu_index: int | None = None  # the GPU this machine's facts describe (``detect(gpu=...)``, else GPU 0)
    gpu_uuid: str | None = None
    gpu_requested: bool = False  # the GPU was named (``detect(gpu=...)``), not GPU 0 by default

    @property
    def is_jetson(self) -> bool:
        return self.platform.family == "jetson" or self.l4t_version is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform.id,
            "platform_name": self.platform.name,
            "family": self.platform.family,
            "reason": self.reason,
            "model": self.model,
            "l4t_version": self.l4t_version,
            "jetpack_version": self.jetpack_version,
            "cuda_version": self.cuda_version,
            "tensorrt_version": self.tensorrt_version,
            "tensorrt_rtx_version": self.tensorrt_rtx_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "driver_version": self.driver_version,
            "super_flash": self.super_flash,
            "gpu_count": self.gpu_count,
            "gpu_index": self.gpu_index,
            "gpu_uuid": self.gpu_uuid,
            "gpus": [
                {
                    "index": g.index,
                    "uuid": g.uuid,
                    "name": g.name,
                    "compute_capability": g.compute_capability,
                    "target": gpu_mod.CC_TARGETS.get(g.compute_capability or "", "generic"),
                }
                for g in self.gpus
            ],
        }


def detect(
    sysroot: str | os.PathLike[str] = "/",
    *,
    nvidia_smi: str | None = "nvidia-smi",
    nvml: bool | None = None,
    gpu: str | int | None = None,
) -> Machine:
    """Identify the machine whose files are under ``sysroot``.

    ``nvidia_smi`` is the command (looked up on PATH) or path to ask for discrete GPUs; None skips it.
    ``nvml`` asks the real driver through NVML first; by default only when ``sysroot`` is ``/``, since
    NVML cannot be pointed at a test sysroot (tests put an ``nvidia-smi`` stand-in on PATH instead).
    ``gpu`` (``--gpu INDEX|UUID``) picks which of several GPUs the platform, compute capability and name
    describe (default GPU 0), so each GPU of a mixed box selects its own plan.
    """
    root = Path(sysroot)
    if not root.is_dir():
        raise ConfigError(f"sysroot {str(root)!r} is not a directory; pass the root of a machine's file tree")
    if nvml is None:
        nvml = root.resolve() == Path("/")
    versions = {
        "tensorrt_version": package_version("tensorrt"),
        "tensorrt_rtx_version": package_version("tensorrt_rtx"),
    }
    release = _read(root / "etc/nv_tegra_release")
    compatible = jetson.read_dt_strings(root / "proc/device-tree/compatible")
    model_lines = jetson.read_dt_strings(root / "proc/device-tree/model")
    model = model_lines[0] if model_lines else None
    is_tegra = release is not None or any("tegra" in c for c in compatible)
    if is_tegra:
        if gpu is not None and str(gpu).strip() not in ("", "0"):
            raise ConfigError(f"--gpu {gpu}: a Jetson has one integrated GPU, GPU 0")
        return _detect_jetson(root, release, compatible, model, versions)
    return _detect_discrete(root, nvidia_smi, nvml, model, versions, gpu)


def _detect_jetson(
    root: Path, release: str | None, compatible: list[str], model: str | None, versions: dict[str, str | None]
) -> Machine:
    l4t = jetson.parse_tegra_release(release) if release is not None else None
    row = jetson.jetpack_for(l4t) if l4t else None
    seen: list[str] = []
    if release is None:
        seen.append("no /etc/nv_tegra_release")
    elif l4t is None:
        seen.append(f"/etc/nv_tegra_release without an 'R<major> (release), REVISION: x.y' line: {release[:80]!r}")
    elif row is None:
        seen.append(f"L4T {l4t} is in no JetPack row of the table")
    cuda = cuda_toolkit_version(root)
    if cuda is None and row is not None:
        cuda = row.cuda
        seen.append(f"CUDA {cuda} from the JetPack table (no /usr/local/cuda/version.json)")
    if not compatible:
        platform, super_flash = generic_platform(), False
        reason = "a Jetson (/etc/nv_tegra_release present) but /proc/device-tree/compatible is missing or empty"
    else:
        jetsons = [t for t in all_targets() if t.family == "jetson"]
        match = jetson.match_module(compatible, jetsons)
        platform = match.platform or generic_platform()
        super_flash, reason = match.super_flash, match.reason
        platform, reason = _check_devkit_memory(root, compatible, platform, reason)
    if model:
        reason += f"; model '{model}'"
    if l4t:
        reason += f"; L4T {l4t}" + (f" (JetPack {row.jetpack})" if row else "")
    if seen:
        reason += "; " + "; ".join(seen)
    cc = platform.compute_capability
    return Machine(
        platform=platform,
        reason=reason,
        l4t_version=l4t,
        jetpack_version=row.jetpack if row else None,
        cuda_version=cuda,
        gpu_name=f"{platform.name} integrated GPU" if platform.family == "jetson" else None,
        compute_capability=cc,
        super_flash=super_flash,
        gpu_count=1 if platform.family == "jetson" else 0,
        gpu_index=0 if platform.family == "jetson" else None,
        model=model,
        tensorrt_version=versions["tensorrt_version"],
        tensorrt_rtx_version=versions["tensorrt_rtx_version"],
    )


def _check_devkit_memory(root: Path, compatible: list[str], platform: Platform, reason: str) -> tuple[Platform, str]:
    """Early AGX Orin developer kits carry a 32 GB p3701-0000 module: tell them apart by MemTotal."""
    if platform.id != "jetson-agx-orin-64gb" or not any(_DEVKIT_AGX in c for c in compatible):
        return platform, reason
    gib = jetson.mem_total_gib(root)
    if gib is None:
        return platform, reason + "; /proc/meminfo unreadable, assumed the 64 GB devkit module"
    if gib < _AGX_32GB_BELOW_GIB:
        return get_target("jetson-agx-orin-32gb"), reason + f"; MemTotal {gib:.1f} GiB: the 32 GB devkit module"
    return platform, reason + f"; MemTotal {gib:.1f} GiB"


def _detect_discrete(
    root: Path,
    nvidia_smi: str | None,
    nvml: bool,
    model: str | None,
    versions: dict[str, str | None],
    gpu: str | int | None = None,
) -> Machine:
    notes: list[str] = []
    query: gpu_mod.GpuQuery | None = None
    if nvml:
        query = gpu_mod.query_nvml()
        notes.append(query.note)
    if (query is None or query.gpus is None) and nvidia_smi is not None:
        query = gpu_mod.query_nvidia_smi(nvidia_smi)
        notes.append(query.note)
    if not nvml and nvidia_smi is None:
        notes.append("GPU queries disabled")
    gpus = query.gpus if query is not None and query.gpus else ()
    cuda = cuda_toolkit_version(root) or (query.cuda_version if query is not None else None)
    common: dict[str, Any] = {"cuda_version": cuda, "model": model, "gpus": gpus, "gpu_count": len(gpus), **versions}
    chosen = gpu_mod.choose_gpu(gpus, gpu)
    if chosen is None:
        reason = "not a Jetson and no NVIDIA GPU found (" + "; ".join(notes) + ")"
        return Machine(platform=get_target("cpu"), reason=reason, **common)
    first = chosen
    others = f"; {len(gpus)} GPUs, using GPU {first.index}" if len(gpus) > 1 else ""
    seen = (
        f"GPU {first.index} '{first.name}' (compute capability {first.compute_capability or 'unknown'}) via {notes[-1]}"
    )
    target_id = gpu_mod.CC_TARGETS.get(first.compute_capability or "")
    if target_id is None:
        known = ", ".join(f"{cc} {t}" for cc, t in gpu_mod.CC_TARGETS.items())
        platform = generic_platform(first.compute_capability)
        reason = f"{seen} matches no target (known: {known}){others}"
    else:
        platform = get_target(target_id)
        reason = f"{seen}{others}"
    return Machine(
        platform=platform,
        reason=reason,
        gpu_name=first.name,
        compute_capability=first.compute_capability,
        driver_version=first.driver_version,
        gpu_index=first.index,
        gpu_uuid=first.uuid,
        gpu_requested=gpu is not None and str(gpu).strip() != "",
        **common,
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def tensorrt_warning(machine: Machine, executable: str | None = None) -> str | None:
    """The loud line for a Jetson whose Python sees no TensorRT (every bundle would run on ONNX Runtime), else None."""
    if not machine.is_jetson or machine.tensorrt_version is not None:
        return None
    import sys

    where = f"L4T {machine.l4t_version}" if machine.l4t_version else machine.platform.name
    return (
        f"WARNING: this Jetson ({where}) runs without TensorRT: {executable or sys.executable} cannot import "
        "tensorrt, so every bundle falls back to ONNX Runtime; install JetPack's python3-libnvinfer and use a venv "
        "made with --system-site-packages without tensorrt-stubs (scripts/setup.sh does both)"
    )
