"""TensorRT-RTX ahead-of-time builds: one plan for one or several compute capabilities, no GPU needed.

TensorRT-RTX compiles for the listed compute capabilities at build time and JIT-specialises kernels
on the device at load, so a desktop (or CI machine without a GPU) builds plans for RTX 20/30/40/50
cards at once: ``build_rtx(request, ["8.6", "8.9"])`` writes one plan that runs on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from builders.engine_common import EngineBuild, EngineRequest, library_version
from edge.errors import BuildError

# Compute capability -> ComputeCapability member. TensorRT-RTX does not target 8.7 (Jetson Orin),
# 9.0 (Hopper) or 11.0 (Thor): those use classic TensorRT on the device.
CC_MEMBERS = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121"}


@dataclass(frozen=True)
class RtxPlan:
    """What the built plan covers, for the manifest's artifact entry."""

    size: int
    compute_capabilities: tuple[str, ...]
    tensorrt_version: str


def import_rtx() -> ModuleType:
    """The ``tensorrt_rtx`` module, or a BuildError that says how to install it."""
    try:
        import tensorrt_rtx
    except ImportError as exc:
        raise BuildError(
            f"TensorRT-RTX is not importable ({exc}); install it with `pip install tensorrt-rtx-cu13` "
            "(or the kit's `rtx` extra) to build plans for RTX targets"
        ) from None
    return tensorrt_rtx


def rtx_version() -> str | None:
    """The installed TensorRT-RTX version, or None when it is not installed."""
    try:
        return library_version(import_rtx())
    except BuildError:
        return None


def build_rtx(request: EngineRequest, compute_capabilities: Sequence[str], trt: ModuleType | None = None) -> RtxPlan:
    """Build one ahead-of-time plan covering ``compute_capabilities`` (e.g. ``["8.6", "8.9"]``)."""
    trt = trt or import_rtx()
    ccs = tuple(dict.fromkeys(str(c) for c in compute_capabilities))
    if not ccs:
        raise BuildError(f"{request.label}: a TensorRT-RTX plan needs at least one compute capability")
    bad = [c for c in ccs if c not in CC_MEMBERS]
    if bad:
        raise BuildError(
            f"{request.label}: TensorRT-RTX cannot build for compute capability {bad[0]} (it targets "
            f"{', '.join(CC_MEMBERS)}); build that target with classic TensorRT on the device"
        )
    build = EngineBuild(trt, request)
    build.config.num_compute_capabilities = len(ccs)
    for i, cc in enumerate(ccs):
        build.config.set_compute_capability(getattr(trt.ComputeCapability, CC_MEMBERS[cc]), i)
    try:
        size = build.run()
    except BuildError as exc:
        if "FP32 GEMM is not supported" in str(exc):  # Turing (sm 7.5) has no FP32 GEMM in TensorRT-RTX
            raise BuildError(f"{exc}; build Turing (rtx-turing) plans with --precision fp16") from None
        raise
    return RtxPlan(size=size, compute_capabilities=ccs, tensorrt_version=library_version(trt))
