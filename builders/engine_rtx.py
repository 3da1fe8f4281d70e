"""TensorRT-RTX ahead-of-time builds: one plan for one or several compute capabilities, no GPU needed.

TensorRT-RTX compiles for the listed compute capabilities at build time and JIT-specialises kernels
on the device at load, so a desktop (or CI machine without a GPU) builds plans for RTX 20/30/40/50
cards at once: ``build_rtx(request, ["8.6", "8.9"])`` writes one plan that runs on both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from builders.engine_common import EngineBuild, EngineRequest, library_version, make_logger
from edge.errors import BuildError

# Compute capability -> ComputeCapability member. TensorRT-RTX does not target 8.7 (Jetson Orin),
# 9.0 (Hopper) or 11.0 (Thor): those use classic TensorRT on the device.
CC_MEMBERS = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120", "12.1": "SM121"}
# Layers whose output shapes depend on data: they need runtime allocation, so no REQUIRE_USER_ALLOCATION.
DATA_DEPENDENT_LAYERS = ("NON_ZERO", "NMS", "TRIP_LIMIT", "RECURRENCE", "ITERATOR", "LOOP_OUTPUT")

log = logging.getLogger("builders.engine")


@dataclass(frozen=True)
class RtxPlan:
    """What the built plan covers, for the manifest's artifact entry."""

    size: int
    compute_capabilities: tuple[str, ...]
    tensorrt_version: str
    cuda_graph_ready: bool = False  # built with REQUIRE_USER_ALLOCATION: CUDA graph capture is supported


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
    set_compute_capabilities(trt, build.config, [CC_MEMBERS[cc] for cc in ccs], request.label)
    graph_ready = require_user_allocation(trt, build.network, build.config)
    try:
        size = build.run()
    except BuildError as exc:
        if "FP32 GEMM is not supported" in str(exc):  # Turing (sm 7.5) has no FP32 GEMM in TensorRT-RTX
            raise BuildError(f"{exc}; build Turing (rtx-turing) plans with --precision fp16") from None
        raise
    return RtxPlan(
        size=size, compute_capabilities=ccs, tensorrt_version=library_version(trt), cuda_graph_ready=graph_ready
    )


def set_compute_capabilities(trt: ModuleType, config: Any, members: Sequence[str], label: str) -> None:
    """``config.set_compute_capability`` for each ``ComputeCapability`` member name, each answer checked."""
    config.num_compute_capabilities = len(members)
    logger = make_logger(trt)
    for i, member in enumerate(members):
        with logger.collect() as errors:
            ok = config.set_compute_capability(getattr(trt.ComputeCapability, member), i)
        if not ok:
            why = f" ({errors[0]})" if errors else ""
            raise BuildError(
                f"{label}: TensorRT-RTX {library_version(trt)} refused compute capability {member} at index {i} "
                f"of {len(members)}{why}; build with other --target values"
            )


def require_user_allocation(trt: ModuleType, network: Any, config: Any) -> bool:
    """Set ``BuilderFlag.REQUIRE_USER_ALLOCATION`` unless the network has data-dependent shapes.

    The flag makes TensorRT-RTX guarantee that inference can be captured in a CUDA graph
    (``cuda_graph="whole"`` at load); a network with such layers (ONNX NonZero, NonMaxSuppression, loops)
    would fail to build with it, so it is left off there and the runtime says the graph cannot be used.
    Returns whether the flag was set.
    """
    flag = getattr(trt.BuilderFlag, "REQUIRE_USER_ALLOCATION", None)
    if flag is None:
        return False
    dynamic = {getattr(trt.LayerType, n) for n in DATA_DEPENDENT_LAYERS if hasattr(trt.LayerType, n)}
    kinds = [network.get_layer(i).type for i in range(network.num_layers)]
    found = sorted({str(getattr(k, "name", k)) for k in kinds if k in dynamic})
    if found:
        log.info("data-dependent layers (%s): plan built without REQUIRE_USER_ALLOCATION", ", ".join(found))
        return False
    config.set_flag(flag)
    return True
