"""``edge info``: what this machine is, which versions it carries, and which backends can run here.

``edge info --targets`` lists every target profile the builder accepts.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from platforms import Machine, Platform


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show the detected platform, library versions and usable backends",
        description="Show the detected platform (and why), L4T/JetPack/CUDA/TensorRT versions, the GPU, "
        "and the backends that can run here. --targets lists every build target instead.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--targets", action="store_true", help="list every target id with its facts")
    parser.add_argument("--sysroot", default="/", help=argparse.SUPPRESS)
    parser.add_argument("--nvidia-smi", default="nvidia-smi", help=argparse.SUPPRESS)
    parser.add_argument(
        "--gpu", metavar="INDEX|UUID", help="describe this GPU of several (default 0); every GPU is listed anyway"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import platforms

    if args.targets:
        targets = platforms.all_targets()
        if args.json:
            print(json.dumps({"targets": [t.to_dict() for t in targets]}, indent=2))
        else:
            print(format_targets(targets))
        return 0
    machine = platforms.detect(args.sysroot, nvidia_smi=args.nvidia_smi or None, gpu=args.gpu)
    backends = backends_here(machine)
    if args.json:
        data = machine.to_dict()
        data["unverified"] = list(machine.platform.unverified)
        if machine.platform.is_jetson:
            modes = machine.platform.modes(machine.super_flash)
            data["power_modes"] = [{"id": m.id, "name": m.name} for m in modes]
            data["default_power_mode"] = machine.platform.default_mode(machine.super_flash)
        data["backends"] = backends
        print(json.dumps(data, indent=2))
    else:
        print(format_machine(machine, backends))
    return 0


def backends_here(machine: Machine) -> list[dict[str, Any]]:
    """Each backend with ``available`` and a ``detail`` saying what it found or what is missing."""
    from platforms.gpu import RTX_COMPUTE_CAPABILITIES
    from platforms.versions import package_version

    result: list[dict[str, Any]] = []
    ort_version = package_version("onnxruntime")
    providers: list[str] = []
    if ort_version is not None:
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    result.append(
        {
            "name": "onnxruntime",
            "available": ort_version is not None,
            "version": ort_version,
            "providers": providers,
            "detail": ", ".join(providers) if providers else "not installed (pip install onnxruntime)",
        }
    )
    gpu = machine.gpu_count > 0
    cc = machine.compute_capability
    rtx = machine.tensorrt_rtx_version
    if rtx is None:
        rtx_detail = "tensorrt_rtx not installed"
    elif not gpu:
        rtx_detail = f"tensorrt_rtx {rtx} installed, but no NVIDIA GPU to run engines on"
    elif cc not in RTX_COMPUTE_CAPABILITIES:
        rtx_detail = f"tensorrt_rtx {rtx} installed, but it does not run on compute capability {cc}"
    else:
        rtx_detail = f"tensorrt_rtx {rtx} on {machine.gpu_name} ({cc})"
    result.append(
        {
            "name": "tensorrt-rtx",
            "available": rtx is not None and gpu and cc in RTX_COMPUTE_CAPABILITIES,
            "version": rtx,
            "detail": rtx_detail,
        }
    )
    trt = machine.tensorrt_version
    if trt is None:
        trt_detail = "tensorrt not installed"
    elif not gpu:
        trt_detail = f"tensorrt {trt} installed, but no NVIDIA GPU to run engines on"
    else:
        trt_detail = f"tensorrt {trt} on {machine.gpu_name} ({cc})"
    result.append({"name": "tensorrt", "available": trt is not None and gpu, "version": trt, "detail": trt_detail})
    return result


def format_machine(machine: Machine, backends: list[dict[str, Any]]) -> str:
    p = machine.platform
    gpu = "none"
    if machine.gpu_name:
        gpu = f"{machine.gpu_name} (compute capability {machine.compute_capability or 'unknown'})"
        if machine.driver_version:
            gpu += f", driver {machine.driver_version}"
        if machine.gpu_count > 1:
            gpu += f", {machine.gpu_count} GPUs"
    rows = [
        ("platform", f"{p.id} ({p.name})"),
        ("reason", machine.reason),
        ("model", machine.model or "-"),
        ("L4T", machine.l4t_version or "-"),
        ("JetPack", machine.jetpack_version or "-"),
        ("Super flash", "yes" if machine.super_flash else "no") if machine.is_jetson else ("", ""),
        ("CUDA", machine.cuda_version or "not found"),
        ("TensorRT", machine.tensorrt_version or "not installed"),
        ("TensorRT-RTX", machine.tensorrt_rtx_version or "not installed"),
        ("GPU", gpu),
    ]
    if len(machine.gpus) > 1:  # every GPU, as `--gpu INDEX|UUID` names them; the facts above describe one
        from platforms.gpu import CC_TARGETS

        for g in machine.gpus:
            target = CC_TARGETS.get(g.compute_capability or "", "generic")
            mark = " (selected)" if g.index == machine.gpu_index else ""
            rows.append(
                (f"GPU {g.index}", f"{g.name}, sm {g.compute_capability or '?'}, {target}, {g.uuid or '-'}{mark}")
            )
    if p.is_jetson:
        modes = " ".join(str(m) for m in p.modes(machine.super_flash)) or "not in the profile"
        default = p.default_mode(machine.super_flash)
        rows.append(
            (
                "power modes",
                f"{modes}"
                + (f", default {default}" if default else "")
                + " (profile; edge power modes reads the device)",
            )
        )
    if p.unverified:
        rows.append(("unverified", ", ".join(p.unverified) + " (defaults to confirm on the device)"))
    for backend in backends:
        mark = "yes" if backend["available"] else "no"
        rows.append((f"backend {backend['name']}", f"{mark}: {backend['detail']}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows if k)


def format_targets(targets: tuple[Platform, ...]) -> str:
    header = ("target", "CC", "flavour", "precisions", "DLA", "memory", "name")
    rows = [header]
    for t in targets:
        memory = f"{t.memory_gb:g} GB" if t.memory_gb else "-"
        rows.append(
            (
                t.id,
                t.compute_capability or "-",
                t.trt_flavour or "onnxruntime",
                ",".join(t.precisions),
                str(t.dla_cores),
                memory,
                t.name,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    return "\n".join(lines)
