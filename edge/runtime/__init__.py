"""Load a bundle and run it: ``edge.runtime.load(bundle) -> Model``.

    from edge.runtime import load
    with load("face.bundle") as model:              # best artifact for this machine
        dets = model.predict(cv2.imread("photo.jpg"))
        print(model.backend_name, model.timings)

Selection rules: :mod:`edge.runtime.select`. Backends: :mod:`edge.backends`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edge.backends.base import Backend
from edge.errors import ConfigError
from edge.runtime.bundle import Bundle
from edge.runtime.model import Model
from edge.runtime.select import BACKEND_CHOICES, CUDA_GRAPH, Choice, Facts, select_artifact

log = logging.getLogger(__name__)

__all__ = ["BACKEND_CHOICES", "Bundle", "Choice", "Facts", "Model", "default_state_dir", "detect_facts", "load"]


def default_state_dir() -> Path:
    """Where backends keep state between runs (TensorRT-RTX runtime caches): ``$EDGE_STATE_DIR`` or XDG cache."""
    env = os.environ.get("EDGE_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge"


def detect_facts(sysroot: str = "/", gpu: str | int | None = None) -> Facts:
    """This machine's facts for artifact selection: ``platforms.detect()``, a CUDA probe, ONNX Runtime providers.

    ``gpu`` (``--gpu INDEX|UUID``) picks the GPU the facts describe on a box with several (default GPU 0).
    """
    import platforms
    from edge.backends.onnxruntime import available_providers

    machine = platforms.detect(sysroot, gpu=gpu)
    if getattr(machine, "compute_capability", None) or int(getattr(machine, "gpu_count", 0) or 0) > 0:
        from edge.backends.cuda import cuda_available

        cuda = cuda_available()
    else:
        cuda = (False, str(getattr(machine, "reason", None) or "no NVIDIA GPU detected"))
    return Facts.from_machine(machine, cuda=cuda, ort_providers=available_providers())


def _onnx_cpu_only(bundle: Bundle, backend: str | None) -> Facts | None:
    """Facts without detecting the machine, when the choice cannot depend on it: the bundle has an ONNX and no
    plans (or the CPU is pinned) and this ONNX Runtime has no GPU provider. Saves platforms.detect() at start."""
    from edge.backends.onnxruntime import available_providers
    from edge.runtime.select import ORT_GPU_PROVIDERS

    arts = bundle.manifest.artifacts
    if not any(a.backend == "onnxruntime" for a in arts) or backend not in (None, "onnxruntime", "onnxruntime-cpu"):
        return None
    if backend is None and any(a.backend != "onnxruntime" for a in arts):
        return None
    providers = available_providers()
    if backend != "onnxruntime-cpu" and any(p in providers for p in ORT_GPU_PROVIDERS):
        return None
    return Facts(
        target="unknown", cuda=False, cuda_reason="not probed (no GPU artifact or provider)", ort_providers=providers
    )


def make_backend(
    bundle: Bundle,
    choice: Choice,
    *,
    state_dir: Path,
    intra_op_threads: int = 0,
    pinned: str | None = None,
    cuda_graph: str = "none",
    device: int | str = 0,
) -> Backend:
    """The backend object for a selected artifact (not yet loaded); the artifact's sha256 is checked here.

    ``pinned="onnxruntime-cuda"`` makes a CUDA provider that does not start an error instead of a silent
    fall-back to the CPU; ``cuda_graph`` is the TensorRT-RTX CUDA graph strategy (``none`` or ``whole``);
    ``device`` is the GPU (``Facts.device``: its UUID, or a CUDA ordinal) the backend sets its device and stream on.
    """
    m = bundle.manifest
    if choice.backend == "onnxruntime":
        from edge.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(
            bundle.verified(choice.artifact),
            m.inputs,
            m.outputs,
            providers=choice.providers,
            intra_op_threads=intra_op_threads,
            require_provider=pinned == "onnxruntime-cuda",
            device=device,
        )
    plan = bundle.read_verified(choice.artifact)
    if choice.backend == "tensorrt":
        from edge.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(plan, m.inputs, m.outputs, artifact=choice.artifact, device=device)
    from edge.backends.tensorrt_rtx import TensorRTRTXBackend

    return TensorRTRTXBackend(
        plan,
        m.inputs,
        m.outputs,
        artifact=choice.artifact,
        state_dir=state_dir,
        cuda_graph=cuda_graph,
        device=device,
    )


def load(
    bundle: str | os.PathLike[str] | Bundle,
    backend: str | None = None,
    *,
    state_dir: str | os.PathLike[str] | None = None,
    warmup: int = 2,
    facts: Facts | None = None,
    intra_op_threads: int = 0,
    cuda_graph: str = "none",
    gpu: str | int | None = None,
) -> Model:
    """Open a bundle, pick the artifact for this machine (or the pinned ``backend``), load it and warm it up.

    ``backend``: one of :data:`BACKEND_CHOICES` or None (best available). ``state_dir``: where the
    TensorRT-RTX runtime cache lives (default :func:`default_state_dir`). ``warmup``: inferences on
    example inputs before the first real frame. ``facts``: this machine (default :func:`detect_facts`).
    ``cuda_graph``: TensorRT-RTX's CUDA graph strategy, ``none`` or ``whole`` (WHOLE_GRAPH_CAPTURE).
    A pinned ``onnxruntime-cuda`` whose CUDA provider does not start is an EngineError, not a CPU fall-back.
    ``gpu``: which GPU of several (``--gpu INDEX|UUID``, nvidia-smi's numbering); the artifact is chosen for
    that GPU and the backend runs on it.
    """
    if cuda_graph not in CUDA_GRAPH:
        raise ConfigError(f"cuda_graph: {cuda_graph!r} is not one of {', '.join(CUDA_GRAPH)}")
    b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    if backend == "auto":
        backend = None
    if facts is not None:
        here = facts
    elif gpu is not None:  # detect even for an ONNX-only bundle: a wrong --gpu is an error, not ignored
        here = detect_facts(gpu=gpu)
    else:
        here = _onnx_cpu_only(b, backend) or detect_facts()
    command = b.manifest.builder.get("command") if isinstance(b.manifest.builder, dict) else None
    choice = select_artifact(
        here,
        b.manifest.artifacts,
        backend,
        bundle=str(b.path),
        source=b.manifest.source,
        command=command if isinstance(command, str) else None,
    )
    for file, why in choice.skipped:  # debug: every command would repeat them; `edge doctor` lists them
        log.debug("skipped %s: %s", file, why)
    state = Path(state_dir) if state_dir is not None else default_state_dir()
    impl = make_backend(
        b,
        choice,
        state_dir=state,
        intra_op_threads=intra_op_threads,
        pinned=backend,
        cuda_graph=cuda_graph,
        device=here.device,
    )
    impl.load()
    model = Model(b, choice, impl)
    try:
        model.warmup(warmup)
    except BaseException:
        model.close()
        raise
    log.debug("loaded %s: %s on %s", b.name, choice.artifact.file, model.backend_name)
    return model
