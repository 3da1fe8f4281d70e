"""Classic TensorRT backend (Jetson with JetPack, x86 servers): a plan from ``edge build --target <id>``.

    TensorRTBackend(plan_bytes, manifest.inputs, manifest.outputs, artifact=artifact).load()

The plan is checked against the manifest (compute capability, TensorRT major.minor, DLA core against the
runtime's ``num_DLA_cores``) before TensorRT sees it; version-compatible plans get
``runtime.engine_host_code_allowed`` and DLA plans ``runtime.DLA_core`` before deserializing. Shared machinery: :mod:`edge.backends.trt_common`.
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
        """Version-compatible plans need host code allowed; DLA plans need the runtime on their DLA core.

        ``Runtime.DLA_core`` must be set before ``deserialize_cuda_engine``: a plan built for DLA core 1
        otherwise deserializes onto core 0. The core count was checked in ``check_plan``.
        """
        if self.artifact is None:
            return
        if self.artifact.version_compatible:
            runtime.engine_host_code_allowed = True
        if self.artifact.dla_core is not None:
            runtime.DLA_core = int(self.artifact.dla_core)
            if int(runtime.DLA_core) != int(self.artifact.dla_core):
                raise EngineError(
                    f"TensorRT: the runtime did not accept DLA core {self.artifact.dla_core} for "
                    f"{self.artifact.file} (it reports {runtime.DLA_core}); " + self.rebuild_hint()
                )

    def _create_context(self, engine: tensorrt.ICudaEngine) -> tensorrt.IExecutionContext:
        return engine.create_execution_context()
