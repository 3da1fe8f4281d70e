"""Classic TensorRT backend (Jetson with JetPack, x86 servers): a plan from ``edge build --target <id>``.

    TensorRTBackend(plan_bytes, manifest.inputs, manifest.outputs, artifact=artifact).load()

The plan is checked against the manifest (compute capability, TensorRT major.minor) before TensorRT sees it;
version-compatible plans get ``runtime.engine_host_code_allowed``. Shared machinery: :mod:`edge.backends.trt_common`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.backends.trt_common import TrtBackendBase
from edge.errors import EngineError

if TYPE_CHECKING:
    import tensorrt


class TensorRTBackend(TrtBackendBase):
    name = "tensorrt"
    flavour = "TensorRT"

    def _import_trt(self) -> Any:
        try:
            import tensorrt as trt

            if not hasattr(trt, "Runtime"):  # e.g. only the tensorrt-stubs folder, a namespace package
                raise ImportError("no TensorRT runtime in the installed tensorrt package")
        except ImportError as exc:
            raise EngineError(
                f"TensorRT: the tensorrt module is not importable ({exc}); on Jetson install JetPack's "
                "python3-libnvinfer, elsewhere pip install tensorrt, or use --backend onnxruntime"
            ) from None
        return trt

    def _configure_runtime(self, runtime: tensorrt.Runtime) -> None:
        if self.artifact is not None and self.artifact.version_compatible:
            runtime.engine_host_code_allowed = True

    def _create_context(self, engine: tensorrt.ICudaEngine) -> tensorrt.IExecutionContext:
        return engine.create_execution_context()
