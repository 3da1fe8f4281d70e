"""Classic TensorRT (10.x on Jetson/x86, 11.x on x86) builds, run on the device the plan is for.

Classic TensorRT builds for the GPU it runs on, so a Jetson plan is built on that Jetson
(``scripts/build_engine.py``). Beyond the shared path (:mod:`builders.engine_common`) it adds:

- DLA (TensorRT 10.x on Orin, ``--dla N``): the documented route, a weakly typed network with the
  FP16 (and INT8 for Q/DQ models) flags, ``default_device_type = DLA``, ``DLA_core = N`` and
  ``GPU_FALLBACK`` for layers the DLA cannot run. TensorRT 11 removed those flags: DLA is refused there.
- a timing cache (``--timing-cache FILE``): loaded when the file exists, given to the builder, and
  saved back atomically after a successful build, so rebuilds skip kernel timing;
- portability: ``hardware_compatibility`` (``ampere+``: runs on any Ampere-or-newer GPU; x86 only, not
  JetPack) and ``version_compatible`` (runs on later TensorRT releases; the runtime must allow host code).

This module cannot run where ``tensorrt`` is not installed (CI): its classic-only calls are checked by
mypy against the ``tensorrt-stubs`` API (``scripts/make_stubs.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

from builders.engine_common import EngineBuild, EngineRequest, library_version
from edge.errors import BuildError
from edge.fsutil import atomic_write

HARDWARE_COMPATIBILITY = {"ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


@dataclass(frozen=True)
class ClassicOptions:
    dla_core: int | None = None
    timing_cache: Path | None = None
    hardware_compatibility: str | None = None  # a key of HARDWARE_COMPATIBILITY
    version_compatible: bool = False


@dataclass(frozen=True)
class ClassicPlan:
    """What the built plan is, for the manifest's artifact entry."""

    size: int
    tensorrt_version: str
    dla_core: int | None
    hardware_compatibility: str | None
    version_compatible: bool


def import_classic() -> ModuleType:
    """The classic ``tensorrt`` module, or a BuildError that says where classic plans are built.

    A ``tensorrt`` folder holding only type stubs imports as an empty namespace package, so the
    module must also have ``Builder``.
    """
    try:
        import tensorrt
    except ImportError:
        tensorrt = None  # type: ignore[assignment]
    if tensorrt is None or not hasattr(tensorrt, "Builder"):
        raise BuildError(
            "classic TensorRT (`import tensorrt`) is not installed on this machine; classic plans are built "
            "on the device they run on: make the one-file builder with `python scripts/build_engine.py --pack "
            "build_engine.pyz`, copy it and the model there (JetPack ships TensorRT) and run `python3 "
            "build_engine.pyz MODEL.onnx -o OUT.bundle`, or pass --skip-unavailable to build the other targets now"
        )
    return tensorrt


def classic_version() -> str | None:
    """The installed classic TensorRT version, or None when it is not installed."""
    try:
        return library_version(import_classic())
    except BuildError:
        return None


def save_timing_cache(path: Path, data: bytes | memoryview) -> None:
    """Write the timing cache atomically (temp file beside it, then rename)."""
    atomic_write(path, data)


def build_classic(request: EngineRequest, options: ClassicOptions, precision: str) -> ClassicPlan:
    """Build one plan for this machine's GPU (or DLA core) with classic TensorRT."""
    import_classic()
    import tensorrt as trt

    version = library_version(trt)
    major = int(version.split(".")[0]) if version[:1].isdigit() else 0
    if options.dla_core is not None:
        if major != 10:
            raise BuildError(
                f"--dla needs TensorRT 10.x (JetPack 6/7 on Orin); this machine has TensorRT {version}, "
                "whose strongly typed builds have no DLA route: drop --dla"
            )
        request = replace(request, strongly_typed=False)
    build = EngineBuild(trt, request)
    builder: trt.Builder = build.builder
    config: trt.IBuilderConfig = build.config
    if options.dla_core is not None:
        available = builder.num_DLA_cores
        if not 0 <= options.dla_core < available:
            raise BuildError(
                f"--dla {options.dla_core}: this device has {available} DLA core(s)"
                + (f"; use 0..{available - 1}" if available else "; drop --dla")
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    if options.hardware_compatibility is not None:
        level = HARDWARE_COMPATIBILITY[options.hardware_compatibility]
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    cache_path = options.timing_cache
    if cache_path is not None:
        previous = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(previous)
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            raise BuildError(
                f"--timing-cache {cache_path}: TensorRT {version} cannot use this timing cache (another "
                "TensorRT version or GPU made it); delete the file and build again"
            )
    size = build.run()
    if cache_path is not None:
        save_timing_cache(cache_path, memoryview(config.get_timing_cache().serialize()))
    return ClassicPlan(
        size=size,
        tensorrt_version=version,
        dla_core=options.dla_core,
        hardware_compatibility=options.hardware_compatibility,
        version_compatible=options.version_compatible,
    )
