"""Which artifact of a bundle this machine runs: a pure function of facts, artifacts and a pinned backend.

Order of preference (unless ``backend=`` pins one):

1. a TensorRT plan built for this GPU: compute capability, flavour (classic TensorRT / TensorRT-RTX),
   TensorRT version (major.minor; newer minor when the plan was built version-compatible) and, on
   Jetson, the L4T release; plans built for this machine's target and without DLA come first;
2. the ONNX on an ONNX Runtime GPU provider (CUDA);
3. the ONNX on the CPU.

A plan known to be incompatible is never handed to TensorRT. When nothing fits, one :class:`BundleError`
names what was built, what this machine is, and the ``edge build`` command that fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.errors import BundleError, ConfigError
from edge.manifest import Artifact

# Backend names accepted by ``load(backend=...)``, ``--backend``: the artifact backends plus ONNX
# Runtime pinned to one execution provider.
BACKEND_CHOICES = ("tensorrt", "tensorrt-rtx", "onnxruntime", "onnxruntime-cuda", "onnxruntime-cpu")
ORT_GPU_PROVIDERS = ("CUDAExecutionProvider",)
# TensorRT-RTX CUDA graph strategies (``load(cuda_graph=...)``, ``edge bench --cuda-graph``)
CUDA_GRAPH = ("none", "whole")


@dataclass(frozen=True)
class Facts:
    """What selection needs to know about this machine (from :func:`platforms.detect` and the libraries)."""

    target: str = "cpu"  # platform id, used in the rebuild command
    gpu_name: str | None = None
    compute_capability: str | None = None  # "8.6"
    cuda: bool = False  # a CUDA device answers
    cuda_reason: str = "no CUDA device"  # why not, when cuda is False
    tensorrt_version: str | None = None  # classic TensorRT, when importable
    tensorrt_rtx_version: str | None = None  # TensorRT-RTX, when importable
    l4t_version: str | None = None  # Jetson only
    dla_cores: int = 0
    trt_flavour: str | None = None  # the target's preferred flavour
    ort_providers: tuple[str, ...] = ("CPUExecutionProvider",)

    @classmethod
    def from_machine(
        cls, machine: Any, *, cuda: tuple[bool, str], ort_providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> Facts:
        """Facts from a ``platforms.Machine`` (read by attribute name) plus CUDA and ONNX Runtime probes."""
        platform = getattr(machine, "platform", None)
        return cls(
            target=str(getattr(platform, "id", None) or "cpu"),
            gpu_name=getattr(machine, "gpu_name", None),
            compute_capability=getattr(machine, "compute_capability", None),
            cuda=cuda[0],
            cuda_reason=cuda[1],
            tensorrt_version=getattr(machine, "tensorrt_version", None),
            tensorrt_rtx_version=getattr(machine, "tensorrt_rtx_version", None),
            l4t_version=getattr(machine, "l4t_version", None),
            dla_cores=int(getattr(platform, "dla_cores", 0) or 0),
            trt_flavour=getattr(platform, "trt_flavour", None),
            ort_providers=tuple(ort_providers),
        )

    def describe(self) -> str:
        parts = [f"target {self.target}"]
        if self.gpu_name or self.compute_capability:
            parts.append(f"GPU {self.gpu_name or '?'} (sm {self.compute_capability or '?'})")
        if not self.cuda:
            parts.append("no usable CUDA GPU")
        parts.append(f"TensorRT {self.tensorrt_version or 'not installed'}")
        parts.append(f"TensorRT-RTX {self.tensorrt_rtx_version or 'not installed'}")
        if self.l4t_version:
            parts.append(f"L4T {self.l4t_version}")
        parts.append(
            "ONNX Runtime providers " + ",".join(p.replace("ExecutionProvider", "") for p in self.ort_providers)
        )
        return ", ".join(parts)


@dataclass(frozen=True)
class Choice:
    """The selected artifact, the backend that runs it and (for ONNX Runtime) the providers, in order."""

    artifact: Artifact
    backend: str  # "tensorrt", "tensorrt-rtx" or "onnxruntime"
    providers: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = field(default=())  # (artifact file, why not) of better candidates

    @property
    def label(self) -> str:
        if self.backend == "onnxruntime":
            prov = self.providers[0].replace("ExecutionProvider", "").lower() if self.providers else "cpu"
            return f"onnxruntime-{prov}"
        return self.backend


def _major_minor(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def _cc(value: str | None) -> tuple[int, int] | None:
    return _major_minor(value)


def describe_artifact(a: Artifact) -> str:
    if a.backend == "onnxruntime":
        return f"{a.file} (onnx, {a.precision})"
    bits = [a.backend, a.tensorrt_version or "?"]
    if a.compute_capabilities:
        bits.append("sm " + "/".join(a.compute_capabilities))
    if a.l4t_version:
        bits.append(f"L4T {a.l4t_version}")
    if a.dla_core is not None:
        bits.append(f"DLA {a.dla_core}")
    bits.append(a.precision)
    return f"{a.file} ({', '.join(bits)}; targets {','.join(a.targets) or '?'})"


def plan_problem(a: Artifact, f: Facts) -> str | None:
    """Why a TensorRT/TensorRT-RTX plan cannot run here, or None when it can."""
    if not f.cuda:
        return f"no usable CUDA GPU ({f.cuda_reason})"
    here = f.tensorrt_version if a.backend == "tensorrt" else f.tensorrt_rtx_version
    lib = "TensorRT" if a.backend == "tensorrt" else "TensorRT-RTX"
    if here is None:
        return f"{lib} is not installed here"
    cc = _cc(f.compute_capability)
    if cc is None:
        return "this GPU's compute capability is unknown"
    compat = (a.hardware_compatibility or "").lower().replace("_", "-")
    if compat in ("ampere+", "ampere-plus") and a.backend == "tensorrt":  # `edge build --hardware-compatibility`
        if cc < (8, 0) or f.l4t_version:
            return f"built hardware-compatible for Ampere+ discrete GPUs, this GPU is sm {f.compute_capability}"
    elif f.compute_capability not in a.compute_capabilities:
        built = "/".join(a.compute_capabilities) or "unknown"
        return f"built for sm {built}, this GPU is sm {f.compute_capability}"
    built_v, here_v = _major_minor(a.tensorrt_version), _major_minor(here)
    if built_v is None or here_v is None:
        return f"{lib} version unknown (plan {a.tensorrt_version}, here {here})"
    if a.version_compatible and a.backend == "tensorrt":
        if here_v[0] != built_v[0] or here_v < built_v:
            return f"built version-compatible with {lib} {a.tensorrt_version}, here {here} (needs {built_v[0]}.x >= it)"
    elif built_v != here_v:
        return f"built with {lib} {a.tensorrt_version}, here {here} (plans need the same major.minor)"
    if a.l4t_version or f.l4t_version:
        lb, lh = _major_minor(a.l4t_version), _major_minor(f.l4t_version)
        if lb != lh:
            return f"built for L4T {a.l4t_version or 'none (not Jetson)'}, here L4T {f.l4t_version or 'none'}"
    if a.dla_core is not None and a.dla_core >= f.dla_cores:
        return f"built for DLA core {a.dla_core}, this machine has {f.dla_cores} DLA core(s)"
    return None


def _ort_gpu(f: Facts) -> tuple[str, ...]:
    if not f.cuda:
        return ()
    return tuple(p for p in ORT_GPU_PROVIDERS if p in f.ort_providers)


def _plan_order(a: Artifact, f: Facts) -> tuple[int, int, int]:
    return (
        0 if f.target in a.targets else 1,
        0 if a.backend == (f.trt_flavour or a.backend) else 1,
        0 if a.dla_core is None else 1,
    )


def select_artifact(
    facts: Facts,
    artifacts: Sequence[Artifact],
    backend: str | None = None,
    *,
    bundle: str = "BUNDLE",
    source: str = "MODEL.onnx",
) -> Choice:
    """The best artifact this machine can run (see the module doc); ``backend`` pins one of BACKEND_CHOICES."""
    if backend is not None and backend not in BACKEND_CHOICES:
        raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKEND_CHOICES)}")
    skipped: list[tuple[str, str]] = []
    plans = [a for a in artifacts if a.backend in ("tensorrt", "tensorrt-rtx")]
    onnx = [a for a in artifacts if a.backend == "onnxruntime"]
    want_plan = backend in (None, "tensorrt", "tensorrt-rtx")
    for a in sorted(plans, key=lambda a: _plan_order(a, facts)):
        if backend in ("tensorrt", "tensorrt-rtx") and a.backend != backend:
            continue
        if not want_plan:
            continue
        why = plan_problem(a, facts)
        if why is None:
            return Choice(a, a.backend, (), tuple(skipped))
        skipped.append((a.file, why))
    if backend in (None, "onnxruntime", "onnxruntime-cuda", "onnxruntime-cpu") and onnx:
        gpu = _ort_gpu(facts)
        if backend == "onnxruntime-cuda" and not gpu:
            why = (
                f"no usable CUDA GPU ({facts.cuda_reason})"
                if not facts.cuda
                else "ONNX Runtime has no CUDA provider here (install onnxruntime-gpu)"
            )
            skipped.append((onnx[0].file, why))
        else:
            providers = gpu if backend != "onnxruntime-cpu" else ()
            return Choice(onnx[0], "onnxruntime", (*providers, "CPUExecutionProvider"), tuple(skipped))
    raise BundleError(_nothing_message(facts, artifacts, backend, skipped, bundle, source))


def _nothing_message(
    facts: Facts,
    artifacts: Sequence[Artifact],
    backend: str | None,
    skipped: Sequence[tuple[str, str]],
    bundle: str,
    source: str,
) -> str:
    what = f"backend {backend!r}" if backend else "any backend"
    built = "; ".join(describe_artifact(a) for a in artifacts) or "no artifacts"
    why = "; ".join(f"{file}: {reason}" for file, reason in skipped)
    msg = f"{bundle}: nothing in this bundle runs here with {what}. Built: {built}."
    if why:
        msg += f" Not runnable: {why}."
    msg += f" This machine: {facts.describe()}."
    msg += f" Fix: rebuild for this machine with `edge build {source} --target {facts.target} -o {bundle}`"
    if backend:
        msg += " or choose another --backend"
    return msg
