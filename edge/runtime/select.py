"""Which artifact of a bundle this machine runs: a pure function of facts, artifacts and a pinned backend.

Order of preference (unless ``backend=`` pins one):

1. a TensorRT plan built for this GPU: compute capability, flavour (classic TensorRT / TensorRT-RTX),
   TensorRT version (major.minor; newer minor when the plan was built version-compatible) and, on
   Jetson, the L4T release; plans built for this machine's target and without DLA come first;
2. the ONNX on an ONNX Runtime GPU provider (CUDA);
3. the ONNX on the CPU.

A plan known to be incompatible is never handed to TensorRT (the rules: :func:`edge.backends.compat.plan_problem`,
which the backends use too: this module depends on the backends' layer, never the other way round). When nothing fits, one :class:`BundleError`
names what was built, what this machine is, and the ``edge build`` command that fixes it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.backends.compat import CUDA_GRAPH, plan_problem
from edge.errors import BundleError, ConfigError
from edge.manifest import Artifact

__all__ = ["BACKEND_CHOICES", "CUDA_GRAPH", "Choice", "Facts", "describe_artifact", "plan_problem", "select_artifact"]

# Backend names accepted by ``load(backend=...)``, ``--backend``: the artifact backends plus ONNX
# Runtime pinned to one execution provider.
BACKEND_CHOICES = ("tensorrt", "tensorrt-rtx", "onnxruntime", "onnxruntime-cuda", "onnxruntime-cpu")
ORT_GPU_PROVIDERS = ("CUDAExecutionProvider",)


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
    gpu_index: int | None = None  # which GPU (nvidia-smi's index) these facts describe, on a multi-GPU box
    gpu_uuid: str | None = None  # its UUID: how the backend finds it among CUDA's devices
    gpu_count: int = 0
    gpu_requested: bool = False  # named with --gpu (else GPU 0 by default)

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
            gpu_index=getattr(machine, "gpu_index", None),
            gpu_uuid=getattr(machine, "gpu_uuid", None),
            gpu_count=int(getattr(machine, "gpu_count", 0) or 0),
            gpu_requested=bool(getattr(machine, "gpu_requested", False)),
        )

    @property
    def device(self) -> int | str:
        """What a backend is given to find its GPU: the UUID of a GPU named with --gpu, or of GPU 0 on a box
        with several (CUDA may number them differently); else CUDA's device 0, as any CUDA program starts
        (a lone GPU, a Jetson, or MIG instances, whose UUIDs are not the GPU's)."""
        if self.gpu_uuid and (self.gpu_requested or self.gpu_count > 1):
            return self.gpu_uuid
        return 0

    def describe(self) -> str:
        parts = [f"target {self.target}"]
        if self.gpu_name or self.compute_capability:
            which = f"GPU {self.gpu_index} " if self.gpu_index else "GPU "
            parts.append(f"{which}{self.gpu_name or '?'} (sm {self.compute_capability or '?'})")
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
    command: str | None = None,
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
    raise BundleError(
        _nothing_message(facts, artifacts, backend, skipped, rebuild_command(command, facts.target, bundle, source))
    )


def _nothing_message(
    facts: Facts,
    artifacts: Sequence[Artifact],
    backend: str | None,
    skipped: Sequence[tuple[str, str]],
    fix: str,
) -> str:
    what = f"backend {backend!r}" if backend else "any backend"
    built = "; ".join(describe_artifact(a) for a in artifacts) or "no artifacts"
    why = "; ".join(f"{file}: {reason}" for file, reason in skipped)
    bundle = _bundle_of(fix)
    msg = f"{bundle}: nothing in this bundle runs here with {what}. Built: {built}."
    if why:
        msg += f" Not runnable: {why}."
    msg += f" This machine: {facts.describe()}."
    msg += f" Fix: rebuild for this machine with `{fix}`"
    if backend:
        msg += " or choose another --backend"
    return msg


def rebuild_command(command: str | None, target: str, bundle: str, source: str) -> str:
    """The bundle's own build command (``manifest.builder.command``: every original flag kept) with this
    machine's ``--target`` added when missing, the output set to ``bundle``, and ``--force`` to replace it."""
    words: list[str] = []
    if command:
        try:
            words = shlex.split(command)
        except ValueError:
            words = []
    if not words:
        words = ["edge", "build", source]
    targets: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("--output", "-o") and i + 1 < len(words):
            i += 2
            continue
        if word.startswith("--output="):
            i += 1
            continue
        if word in ("--target", "-t") and i + 1 < len(words):
            targets += words[i + 1].split(",")
        out.append(word)
        i += 1
    if target not in targets and "auto" not in targets:
        out += ["--target", target]
    out += ["-o", bundle]
    if "--force" not in out:
        out.append("--force")
    return shlex.join(out)


def _bundle_of(fix: str) -> str:
    words = shlex.split(fix)
    return words[words.index("-o") + 1]
