"""Which plans a build makes: targets resolved, precision checked, and grouped by TensorRT flavour.

- ``rtx`` family (TensorRT-RTX): all RTX targets share ONE ahead-of-time plan covering their compute
  capabilities (``engine-rtx-ampere+rtx-ada.plan``); built anywhere, no GPU needed.
- ``jetson`` / ``datacenter`` families (classic TensorRT): one plan per target, built on a machine with
  that GPU (same compute capability) and classic TensorRT installed.
- ``cpu``: no plan; the bundle's ONNX runs through ONNX Runtime.

A target that cannot be built here is an error naming the fix, unless ``--skip-unavailable``: then it
gets no plan and is listed in the manifest's ``builder.skipped`` with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import platforms
from builders.engine_rtx import CC_MEMBERS, rtx_version
from builders.engine_trt import classic_version
from builders.options import BuildOptions, precision_error, target_supports
from edge.errors import BuildError, ConfigError
from platforms import Platform

log = logging.getLogger(__name__)


@dataclass
class EnginePlan:
    targets: list[Platform]
    precision: str
    rtx: list[Platform] = field(default_factory=list)
    classic: list[Platform] = field(default_factory=list)
    onnx_only: list[Platform] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    machine: platforms.Machine | None = None
    notes: list[str] = field(default_factory=list)  # warnings the manifest keeps (builder.notes)


def resolve_targets(ids: tuple[str, ...]) -> list[Platform]:
    """Profiles for the ``--target`` ids (``auto`` = this machine), without duplicates, in the given order."""
    out: dict[str, Platform] = {}
    for target_id in ids:
        p = platforms.resolve_target(target_id)
        out.setdefault(p.id, p)
    return list(out.values())


def choose_precision(requested: str | None, targets: list[Platform]) -> str:
    """The requested precision, checked against every target; default fp16 on GPUs, fp32 with a cpu target."""
    if requested is None:
        gpu_only = all(t.family != "cpu" for t in targets)
        requested = "fp16" if gpu_only and all(t.supports("fp16") for t in targets) else "fp32"
    for t in targets:
        if not target_supports(t, requested):
            raise precision_error(requested, t)
    return requested


def _check_engine_flags(options: BuildOptions, targets: list[Platform]) -> None:
    classic = [t for t in targets if t.trt_flavour == "tensorrt"]
    if options.dla is not None:
        dla_targets = [t for t in classic if t.dla_cores > 0]
        if not dla_targets:
            with_dla = ", ".join(p.id for p in platforms.all_targets() if p.dla_cores > 0)
            raise ConfigError(f"--dla {options.dla}: none of the targets has a DLA (targets with DLA: {with_dla})")
        for t in dla_targets:
            if options.dla >= t.dla_cores:
                raise ConfigError(
                    f"--dla {options.dla}: target {t.id} has {t.dla_cores} DLA core(s) (0..{t.dla_cores - 1})"
                )
    for flag, used in (
        ("--timing-cache", options.timing_cache is not None),
        ("--hardware-compatibility", options.hardware_compatibility is not None),
        ("--version-compatible", options.version_compatible),
    ):
        if used and not classic:
            raise ConfigError(f"{flag} applies to classic TensorRT targets (Jetson, datacenter) only; none is selected")
    if options.hardware_compatibility is not None and any(t.is_jetson for t in classic):
        raise ConfigError(
            "--hardware-compatibility is not supported by TensorRT on JetPack: drop it for Jetson targets"
        )


def _classic_unavailable(target: Platform, machine: platforms.Machine) -> str | None:
    """Why a classic plan for ``target`` cannot be built on this machine, or None when it can."""
    if classic_version() is None:
        return "classic TensorRT is not installed here: build it on the device with scripts/build_engine.py"
    if machine.compute_capability != target.compute_capability:
        here = machine.gpu_name or machine.platform.name
        return (
            f"classic TensorRT builds for the GPU it runs on, and this machine ({here}, compute capability "
            f"{machine.compute_capability or 'none'}) is not a {target.name} (compute capability "
            f"{target.compute_capability}): build it on the device with scripts/build_engine.py"
        )
    return None


def plan_engines(options: BuildOptions) -> EnginePlan:
    """Resolve and check the targets and decide which plans to build; raises before any heavy work."""
    targets = resolve_targets(options.targets)
    precision = choose_precision(options.precision, targets)
    if precision == "fp32" and (options.calib is not None or options.val is not None or options.max_drop is not None):
        raise ConfigError(
            "--calib/--val/--max-drop apply to fp16, int8 and fp8, and this build is fp32 (the default when a cpu "
            "target is included): add --precision"
        )
    _check_engine_flags(options, targets)
    plan = EnginePlan(targets=targets, precision=precision)
    unavailable: dict[str, str] = {}
    for t in targets:
        if t.trt_flavour == "tensorrt-rtx":
            if t.compute_capability not in CC_MEMBERS:
                raise ConfigError(f"target {t.id}: TensorRT-RTX has no compute capability {t.compute_capability}")
            if rtx_version() is None:
                unavailable[t.id] = "TensorRT-RTX is not installed here: pip install tensorrt-rtx-cu13"
            else:
                plan.rtx.append(t)
        elif t.trt_flavour == "tensorrt":
            if plan.machine is None:
                plan.machine = platforms.detect()
            why = _classic_unavailable(t, plan.machine)
            if why is None:
                if plan.machine.platform.id != t.id:
                    log.warning(
                        "building the %s plan on a %s (same compute capability %s): it loads there, but its "
                        "kernels are tuned for this GPU; build on the target itself for best speed",
                        t.id,
                        plan.machine.platform.id,
                        t.compute_capability,
                    )
                plan.classic.append(t)
            else:
                unavailable[t.id] = why
        else:
            plan.onnx_only.append(t)
    if unavailable and not options.skip_unavailable:
        target_id, why = next(iter(unavailable.items()))
        raise BuildError(
            f"target {target_id}: {why}; or pass --skip-unavailable to build the other targets now "
            "(that target then runs the bundle's ONNX until its plan is built)"
        )
    for target_id, why in unavailable.items():
        log.warning("skipping the plan for %s: %s", target_id, why)
    plan.skipped = unavailable
    if precision == "int8" and plan.rtx:
        note = rtx_int8_note(plan.rtx)
        log.warning("%s", note)
        plan.notes.append(note)
    return plan


def rtx_int8_note(rtx: list[Platform]) -> str:
    """Why INT8 is the wrong choice for TensorRT-RTX plans, and the better precision for ``rtx``."""
    better = "fp8" if all(t.supports("fp8") for t in rtx) else "fp16"
    if better == "fp8":
        better = "fp16 or fp8"
    ids = ", ".join(t.id for t in rtx)
    return (
        f"int8 for {ids}: TensorRT-RTX runs INT8 only for weight-only GEMM, so the model's Q/DQ convolutions and "
        f"activations run unquantized there (a bigger, not a faster, plan); use --precision {better} for RTX "
        "(int8 suits Jetson, datacenter and CPU targets)"
    )
