"""ONNX Runtime backend: the bundle's ONNX on the CPU, or on the CUDA provider where one is available."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.backends.base import Backend
from edge.errors import EngineError, first_line
from edge.manifest import TensorSpec

log = logging.getLogger(__name__)

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def available_providers() -> tuple[str, ...]:
    """ONNX Runtime's execution providers in this install (empty when onnxruntime is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    return tuple(ort.get_available_providers())


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, _ORT_DTYPES.get(arg.type, str(arg.type)), shape)


class OnnxRuntimeBackend(Backend):
    """An ``onnxruntime.InferenceSession``; ``providers`` in order of preference (CPU is always last).

    ``io_binding`` (default: on for GPU providers) binds inputs and outputs once per call so ONNX Runtime
    copies each tensor once; ``intra_op_threads`` caps the CPU threads (0 = ONNX Runtime's default).
    ``require_provider`` makes a silent fallback to the CPU an error (a pinned GPU backend). ``device`` is
    the GPU the CUDA provider runs on: a CUDA ordinal or a GPU UUID (found among CUDA's devices through
    cuda-python, see :func:`edge.backends.cuda.resolve_device`), given as the provider's ``device_id``.
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike[str],
        inputs: Sequence[TensorSpec] = (),
        outputs: Sequence[TensorSpec] = (),
        *,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        intra_op_threads: int = 0,
        io_binding: bool | None = None,
        require_provider: bool = False,
        device: int | str = 0,
    ) -> None:
        super().__init__(inputs, outputs)
        self.path = os.fspath(path)
        self.providers = tuple(providers) or ("CPUExecutionProvider",)
        self.intra_op_threads = intra_op_threads
        self._io_binding = io_binding
        self._require = require_provider
        self.device = device
        self._session: Any = None
        self._names: list[str] = []
        self.active_providers: tuple[str, ...] = ()

    def describe(self) -> str:
        prov = ",".join(p.replace("ExecutionProvider", "") for p in self.active_providers or self.providers)
        return f"onnxruntime ({prov})"

    def _load(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineError(f"onnxruntime: not installed ({exc}); pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.intra_op_threads:
            opts.intra_op_num_threads = int(self.intra_op_threads)
        opts.log_severity_level = 3
        have = set(ort.get_available_providers())
        providers = [p for p in self.providers if p in have] or ["CPUExecutionProvider"]
        chosen: list[Any] = list(providers)
        if "CUDAExecutionProvider" in providers and self.device not in (0, None):
            options = {"device_id": str(self._device_id())}
            chosen = [(p, options) if p == "CUDAExecutionProvider" else p for p in providers]
        try:
            self._session = ort.InferenceSession(self.path, opts, providers=chosen)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise EngineError(f"onnxruntime: cannot load {self.path}: {first_line(exc, type(exc).__name__)}") from None
        self.active_providers = tuple(self._session.get_providers())
        wanted = self.providers[0]
        if wanted not in self.active_providers:
            msg = f"onnxruntime: {wanted} did not start (active: {', '.join(self.active_providers)})"
            if self._require:
                self._session = None
                raise EngineError(
                    msg + "; check the CUDA/cuDNN libraries onnxruntime-gpu needs, or use --backend onnxruntime-cpu"
                )
            log.warning("%s; running on the CPU", msg)
        gpu = self.active_providers[0] != "CPUExecutionProvider"
        self._io_binding = gpu if self._io_binding is None else self._io_binding
        inputs = [_spec(a) for a in self._session.get_inputs()]
        outputs = [_spec(a) for a in self._session.get_outputs()]
        self._names = [o.name for o in outputs]
        return inputs, outputs

    def _device_id(self) -> int:
        """The CUDA ordinal of ``device`` (a UUID needs cuda-python to be found; else it is an error)."""
        if isinstance(self.device, int):
            return self.device
        from edge.backends import cuda

        return cuda.resolve_device(self.device)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            if self._io_binding:
                binding = self._session.io_binding()
                for name, arr in feeds.items():
                    binding.bind_cpu_input(name, arr)
                for name in self._names:
                    binding.bind_output(name, "cpu")
                self._session.run_with_iobinding(binding)
                values = binding.copy_outputs_to_cpu()
            else:
                values = self._session.run(self._names, feeds)
        except Exception as exc:  # ORT's runtime errors (shape mismatches inside the graph, OOM)
            raise EngineError(f"onnxruntime: inference failed: {first_line(exc, type(exc).__name__)}") from None
        return dict(zip(self._names, values))

    def _close(self) -> None:
        self._session = None
