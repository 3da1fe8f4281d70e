"""Whether a TensorRT / TensorRT-RTX plan can run on a device: the rules both the backends and selection use.

This module is the bottom layer: the backends check a plan with it before deserializing, and
:mod:`edge.runtime.select` ranks a bundle's artifacts with it. It imports nothing above
:mod:`edge.manifest`.

- classic TensorRT plans need the same compute capability (unless built hardware-compatible), the same
  TensorRT major.minor (or a newer minor of the same major for version-compatible plans), the same L4T
  release on Jetson, and the DLA core they were built for;
- TensorRT-RTX plans run only with the release that built them: major.minor.patch must match (the
  runtime's own header check compares these three numbers), and the device's compute capability must be
  one the plan was built for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edge.manifest import Artifact

# TensorRT-RTX CUDA graph strategies (``load(cuda_graph=...)``, ``edge bench --cuda-graph``)
CUDA_GRAPH = ("none", "whole")


class Host(Protocol):
    """What :func:`plan_problem` reads about the device (``edge.runtime.select.Facts`` has these fields)."""

    @property
    def cuda(self) -> bool: ...
    @property
    def cuda_reason(self) -> str: ...
    @property
    def compute_capability(self) -> str | None: ...
    @property
    def tensorrt_version(self) -> str | None: ...
    @property
    def tensorrt_rtx_version(self) -> str | None: ...
    @property
    def l4t_version(self) -> str | None: ...
    @property
    def dla_cores(self) -> int: ...


@dataclass(frozen=True)
class Device:
    """A loaded backend's view of its GPU, for :func:`plan_problem` (the fields of :class:`Host`)."""

    compute_capability: str | None
    tensorrt_version: str | None = None
    tensorrt_rtx_version: str | None = None
    l4t_version: str | None = None
    dla_cores: int = 0
    cuda: bool = True
    cuda_reason: str = ""


def version_tuple(version: str | None, parts: int) -> tuple[int, ...] | None:
    """The first ``parts`` numbers of a dotted version (missing ones are 0), or None when unreadable."""
    if not version:
        return None
    fields = version.split(".")
    try:
        numbers = [int(f) for f in fields[:parts]]
    except ValueError:
        return None
    return tuple(numbers + [0] * (parts - len(numbers)))


def _rtx_release(version: str | None) -> str:
    numbers = version_tuple(version, 3)
    return ".".join(map(str, numbers)) if numbers else str(version)


def plan_problem(a: Artifact, f: Host) -> str | None:
    """Why a TensorRT/TensorRT-RTX plan cannot run on ``f``, or None when it can."""
    if not f.cuda:
        return f"no usable CUDA GPU ({f.cuda_reason})"
    here = f.tensorrt_version if a.backend == "tensorrt" else f.tensorrt_rtx_version
    lib = "TensorRT" if a.backend == "tensorrt" else "TensorRT-RTX"
    if here is None:
        return f"{lib} is not installed here"
    cc = version_tuple(f.compute_capability, 2)
    if cc is None:
        return "this GPU's compute capability is unknown"
    compat = (a.hardware_compatibility or "").lower().replace("_", "-")
    if compat in ("ampere+", "ampere-plus") and a.backend == "tensorrt":  # `edge build --hardware-compatibility`
        if cc < (8, 0) or f.l4t_version:
            return f"built hardware-compatible for Ampere+ discrete GPUs, this GPU is sm {f.compute_capability}"
    elif f.compute_capability not in a.compute_capabilities:
        built = "/".join(a.compute_capabilities) or "unknown"
        return f"built for sm {built}, this GPU is sm {f.compute_capability}"
    if a.backend == "tensorrt-rtx":
        built_r, here_r = version_tuple(a.tensorrt_version, 3), version_tuple(here, 3)
        if built_r is None or here_r is None:
            return f"{lib} version unknown (plan {a.tensorrt_version}, here {here})"
        if built_r != here_r:
            return (
                f"built with {lib} {a.tensorrt_version}, here {here} (TensorRT-RTX plans run only with the release "
                f"that built them, {_rtx_release(a.tensorrt_version)})"
            )
    else:
        built_v, here_v = version_tuple(a.tensorrt_version, 2), version_tuple(here, 2)
        if built_v is None or here_v is None:
            return f"{lib} version unknown (plan {a.tensorrt_version}, here {here})"
        if a.version_compatible:
            if here_v[0] != built_v[0] or here_v < built_v:
                return (
                    f"built version-compatible with {lib} {a.tensorrt_version}, here {here} "
                    f"(needs {built_v[0]}.x >= it)"
                )
        elif built_v != here_v:
            return f"built with {lib} {a.tensorrt_version}, here {here} (plans need the same major.minor)"
    if a.l4t_version or f.l4t_version:
        lb, lh = version_tuple(a.l4t_version, 2), version_tuple(f.l4t_version, 2)
        if lb != lh:
            return f"built for L4T {a.l4t_version or 'none (not Jetson)'}, here L4T {f.l4t_version or 'none'}"
    if a.dla_core is not None and a.dla_core >= f.dla_cores:
        return f"built for DLA core {a.dla_core}, this machine has {f.dla_cores} DLA core(s)"
    return None
