"""TensorRT for RTX backend: an ahead-of-time plan whose kernels are JIT-compiled on first load.

The runtime cache (compiled kernels) is loaded from ``STATE_DIR/tensorrt-rtx/<key>.cache`` at start and
saved atomically at close, so the second start skips JIT. The key covers the plan, the GPU and the
TensorRT-RTX version, so a driver/GPU/library change starts a fresh cache instead of loading a stale one.
``cuda_graph`` selects ``CudaGraphStrategy`` (``"whole"`` = WHOLE_GRAPH_CAPTURE, ``"none"`` = DISABLED); at the
first call, once shapes and addresses are bound, a context that is not stream-capturable
(``IExecutionContext.is_stream_capturable``) is replaced by one without a graph, with a warning saying so
(``cuda_graph_active`` says which). Before deserializing, the manifest's TensorRT-RTX release
must equal this one (major.minor.patch) and ``Runtime.get_engine_validity`` must not answer INVALID.
The runtime config is kept as long as the context; at close the cache is saved, then the context, the
runtime config, the cache, the engine and the runtime are released in that order.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.backends import cuda
from edge.backends.compat import CUDA_GRAPH
from edge.backends.trt_common import TrtBackendBase
from edge.errors import ConfigError, EngineError
from edge.fsutil import atomic_write
from edge.manifest import Artifact, TensorSpec

if TYPE_CHECKING:
    import tensorrt_rtx

log = logging.getLogger(__name__)


class RuntimeCacheStore:
    """One runtime-cache file: ``load() -> bytes | None``; ``save(data)`` writes temp + fsync + rename."""

    def __init__(self, state_dir: str | os.PathLike[str], key: str) -> None:
        self.dir = Path(state_dir) / "tensorrt-rtx"
        self.path = self.dir / f"{key}.cache"

    @staticmethod
    def make_key(plan_sha256: str, gpu: str, compute_capability: str, library_version: str) -> str:
        text = "|".join((plan_sha256, gpu, compute_capability, library_version))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def load(self) -> bytes | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("runtime cache %s unreadable (%s); JIT-compiling again", self.path, exc)
            return None
        return data or None

    def save(self, data: bytes) -> Path:
        try:
            atomic_write(self.path, data, fsync=True)
        except OSError as exc:
            raise EngineError(f"TensorRT-RTX: cannot write the runtime cache in {self.dir}: {exc}") from None
        return self.path


class TensorRTRTXBackend(TrtBackendBase):
    name = "tensorrt-rtx"
    flavour = "TensorRT-RTX"

    def __init__(
        self,
        plan: bytes,
        inputs: Sequence[TensorSpec] = (),
        outputs: Sequence[TensorSpec] = (),
        *,
        artifact: Artifact | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        cuda_graph: str = "none",
        mapped: bool | None = None,
        device: int | str = 0,
    ) -> None:
        super().__init__(plan, inputs, outputs, artifact=artifact, mapped=mapped, device=device)
        if cuda_graph not in CUDA_GRAPH:
            raise ConfigError(f"cuda_graph: {cuda_graph!r} is not one of {', '.join(CUDA_GRAPH)}")
        self.cuda_graph = cuda_graph
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._runtime_config: Any = None  # kept for the context's lifetime (the binding keeps only the engine)
        self._cache: Any = None
        self._store: RuntimeCacheStore | None = None
        self.cache_loaded = False
        self.cuda_graph_active = False  # whole-graph capture requested and the context is capturable
        self._graph_checked = False

    def _import_trt(self) -> Any:
        try:
            import tensorrt_rtx as trt
        except ImportError as exc:
            raise EngineError(
                f"TensorRT-RTX: the tensorrt_rtx module is not importable ({exc}); pip install "
                "tensorrt-rtx-cu13 (or -cu12), or use --backend onnxruntime"
            ) from None
        return trt

    # context first, then the runtime config that created it, then the cache it used, then engine and runtime
    RELEASE_ORDER = ("_context", "_runtime_config", "_cache", "_engine", "_runtime")

    def _check_validity(self, runtime: Any) -> None:
        """``Runtime.get_engine_validity`` (TensorRT-RTX 1.1+): INVALID is refused with the library's reasons."""
        check = getattr(runtime, "get_engine_validity", None)
        if check is None:
            return
        trt = self._trt
        with self._logger.collect() as logged:
            validity, diagnostics = check(self._plan)
        if validity == trt.EngineValidity.VALID:
            return
        reasons = validity_reasons(trt, int(diagnostics)) or logged[-1:] or ["no reason given"]
        if validity == trt.EngineValidity.SUBOPTIMAL:
            log.warning("TensorRT-RTX: the plan runs here but not at its best: %s", "; ".join(reasons))
            return
        raise EngineError(
            f"TensorRT-RTX {self._library_version(trt)} says the plan is not valid here: {'; '.join(reasons)}; "
            + self.rebuild_hint()
        )

    def _create_context(self, engine: tensorrt_rtx.ICudaEngine) -> tensorrt_rtx.IExecutionContext:
        trt = self._trt
        config = self._runtime_config = engine.create_runtime_config()
        config.cuda_graph_strategy = (
            trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE if self.cuda_graph == "whole" else trt.CudaGraphStrategy.DISABLED
        )
        self._cache = config.create_runtime_cache()
        if self.state_dir is not None and self._cache is not None:
            info = cuda.device_info(self._device)
            digest = self.artifact.sha256 if self.artifact else hashlib.sha256(self._plan).hexdigest()
            key = RuntimeCacheStore.make_key(digest, info.name, info.compute_capability, str(trt.__version__))
            self._store = RuntimeCacheStore(self.state_dir, key)
            saved = self._store.load()
            if saved is not None:
                self.cache_loaded = bool(self._cache.deserialize(saved))
                if not self.cache_loaded:
                    log.warning("runtime cache %s did not load; JIT-compiling again", self._store.path)
        if self._cache is not None:
            config.set_runtime_cache(self._cache)
        self._graph_checked = False
        return engine.create_execution_context(config)

    def _context_replaced(self, stream: Any) -> bool:
        """With ``cuda_graph="whole"``: ask ``is_stream_capturable`` once, when the first call has bound its
        shapes and addresses (the state capture depends on); a context that is not capturable is replaced by
        one without a graph strategy, with a warning saying so."""
        if self.cuda_graph != "whole" or self._graph_checked:
            return False
        self._graph_checked = True
        if self._context.is_stream_capturable(stream.handle):
            self.cuda_graph_active = True
            return False
        log.warning(
            "TensorRT-RTX: a CUDA graph cannot be used for %s (the context is not stream-capturable: data-dependent "
            "shapes, or a plan built without REQUIRE_USER_ALLOCATION); running without one",
            self.artifact.file if self.artifact else "this plan",
        )
        self._context = None  # released before its replacement is made (same runtime config and cache)
        self._runtime_config.cuda_graph_strategy = self._trt.CudaGraphStrategy.DISABLED
        self._context = self._engine.create_execution_context(self._runtime_config)
        if self._context is None:
            raise EngineError("TensorRT-RTX: could not create an execution context without a CUDA graph (GPU memory?)")
        return True

    def _finish(self) -> None:
        """Save the runtime cache (before anything is released: see RELEASE_ORDER)."""
        if self._store is None or self._cache is None:
            return
        try:
            path = self._store.save(bytes(self._cache.serialize()))
            log.info("TensorRT-RTX runtime cache saved to %s", path)
        except (EngineError, OSError) as exc:
            log.warning("%s", exc)


def validity_reasons(trt: Any, diagnostics: int) -> list[str]:
    """The ``EngineInvalidityDiagnostics`` flags set in ``diagnostics``, as words."""
    words = {
        "VERSION_MISMATCH": "built with another TensorRT-RTX release",
        "UNSUPPORTED_CC": "built for other compute capabilities",
        "OLD_CUDA_DRIVER": "the NVIDIA driver is too old",
        "OLD_CUDA_RUNTIME": "the CUDA runtime is too old",
        "INSUFFICIENT_GPU_MEMORY": "not enough GPU memory",
        "MALFORMED_ENGINE": "the plan is malformed (truncated or not a TensorRT-RTX plan)",
        "CUDA_ERROR": "a CUDA error occurred while checking",
    }
    members = getattr(trt, "EngineInvalidityDiagnostics", None)
    out = []
    for name, text in words.items():
        flag = getattr(members, name, None)
        if flag is not None and diagnostics & int(flag):
            out.append(text)
    return out
