"""What the classic TensorRT and the TensorRT-RTX backends share: plan checks, deserialization, I/O, execution.

Both flavours expose the same runtime API (``Runtime.deserialize_cuda_engine``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``, ``IOutputAllocator``); a subclass names its module and fills the
flavour-specific hooks (``_import_trt``, ``_library_version``, ``_configure_runtime``, ``_create_context``,
``_finish``). The trt module is typed ``Any`` here; the flavour modules use their typed imports.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from edge.backends import cuda
from edge.backends.base import Backend
from edge.errors import EngineError
from edge.manifest import Artifact, TensorSpec
from edge.runtime.select import Facts, plan_problem

log = logging.getLogger(__name__)


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that forwards to :mod:`logging` and keeps the last errors for exception messages."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(msg)
                log.error("%s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("%s", msg)
            else:
                log.debug("%s", msg)

    return Logger()


def make_output_allocator(trt: Any) -> Any:
    """A ``trt.IOutputAllocator`` for data-dependent output shapes (NMS layers): device memory grown on demand."""

    class OutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, cuda.DeviceBuffer] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name: str, memory: int, size: int, alignment: int) -> int:
            buf = self.buffers.get(tensor_name)
            if buf is None or buf.nbytes < size:
                if buf is not None:
                    buf.close()
                buf = cuda.DeviceBuffer(max(1, size))
                self.buffers[tensor_name] = buf
            return buf.ptr

        def reallocate_output_async(self, tensor_name: str, memory: int, size: int, alignment: int, stream: int) -> int:
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

        def close(self) -> None:
            for buf in self.buffers.values():
                buf.close()
            self.buffers.clear()

    return OutputAllocator()


class TrtBackendBase(Backend):
    """A serialized plan on one GPU: pinned host + device buffers per tensor, one stream, event timing."""

    flavour: ClassVar[str] = "TensorRT"

    def __init__(
        self,
        plan: bytes,
        inputs: Sequence[TensorSpec] = (),
        outputs: Sequence[TensorSpec] = (),
        *,
        artifact: Artifact | None = None,
        mapped: bool | None = None,
        device: int = 0,
    ) -> None:
        super().__init__(inputs, outputs)
        self._plan = plan
        self.artifact = artifact
        self._mapped_opt = mapped
        self._device = device
        self._trt: Any = None
        self._logger: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: cuda.Stream | None = None
        self._events: list[cuda.Event] = []
        self._buffers: dict[str, cuda.TensorBuffers] = {}
        self._allocator: Any = None
        self._input_names: list[str] = []
        self._output_names: list[str] = []
        self._profiles: dict[str, list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}
        self._profile = 0
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._dynamic_outputs: set[str] = set()
        self.mapped = False

    # ---- flavour hooks ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def _import_trt(self) -> Any:
        """The flavour's module (``tensorrt`` or ``tensorrt_rtx``), or EngineError saying what to install."""

    def _library_version(self, trt: Any) -> str:
        return str(trt.__version__)

    def _configure_runtime(self, runtime: Any) -> None:
        """Set runtime options before deserializing (classic: host code for version-compatible plans)."""

    @abc.abstractmethod
    def _create_context(self, engine: Any) -> Any:
        """An execution context for the engine."""

    def _finish(self) -> None:
        """Flavour work at close, before the context is released (TensorRT-RTX saves its runtime cache)."""

    # ---- load ------------------------------------------------------------------------------------------
    def check_plan(self, info: cuda.DeviceInfo, library_version: str) -> None:
        """Refuse, before deserializing, a plan the manifest says was built for another GPU or version."""
        if self.artifact is None:
            return
        facts = Facts(
            compute_capability=info.compute_capability,
            gpu_name=info.name,
            cuda=True,
            tensorrt_version=library_version if self.artifact.backend == "tensorrt" else None,
            tensorrt_rtx_version=library_version if self.artifact.backend == "tensorrt-rtx" else None,
            l4t_version=self.artifact.l4t_version,  # L4T is checked at selection (platforms.detect)
            dla_cores=self.artifact.dla_core + 1 if self.artifact.dla_core is not None else 0,
        )
        why = plan_problem(self.artifact, facts)
        if why:
            raise EngineError(
                f"{self.flavour}: {self.artifact.file} cannot run on this GPU ({info.name}): {why}; rebuild the "
                "bundle for this machine with `edge build ... --target <this target>` or use --backend onnxruntime"
            )

    def _load(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        ok, why = cuda.cuda_available()
        if not ok:
            raise EngineError(f"{self.flavour}: no usable CUDA GPU ({why}); use --backend onnxruntime-cpu")
        trt = self._trt = self._import_trt()
        cuda.call("cudaSetDevice", self._device)
        info = cuda.device_info(self._device)
        self.check_plan(info, self._library_version(trt))
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._configure_runtime(self._runtime)
        self._engine = self._runtime.deserialize_cuda_engine(self._plan)
        if self._engine is None:
            errors = "; ".join(self._logger.errors[-2:]) or "no reason logged"
            raise EngineError(
                f"{self.flavour}: could not deserialize the plan ({errors}); rebuild the bundle for this "
                "machine or use --backend onnxruntime"
            )
        self._context = self._create_context(self._engine)
        if self._context is None:
            raise EngineError(f"{self.flavour}: could not create an execution context (GPU memory?)")
        self._stream = cuda.Stream()
        self._events = [cuda.Event() for _ in range(4)]
        self.mapped = (
            self._mapped_opt if self._mapped_opt is not None else (info.integrated and info.can_map_host_memory)
        )
        inputs, outputs = self._io_specs(trt)
        return inputs, outputs

    def _io_specs(self, trt: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
        engine = self._engine
        inputs, outputs = [], []
        nprof = int(engine.num_optimization_profiles)
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self._buffers[name] = cuda.TensorBuffers(dtype, mapped=self.mapped)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._input_names.append(name)
                profile = None
                if any(d < 0 for d in shape):
                    ranges = []
                    for p in range(nprof):
                        lo, opt, hi = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, p))
                        ranges.append((lo, hi))
                        if p == 0:
                            profile = {"min": lo, "opt": opt, "max": hi}
                    self._profiles[name] = ranges
                    if profile is not None and nprof > 1:  # the union, so the base check accepts any profile
                        profile["min"] = tuple(min(r[0][k] for r in ranges) for k in range(len(shape)))
                        profile["max"] = tuple(max(r[1][k] for r in ranges) for k in range(len(shape)))
                inputs.append(TensorSpec(name, dtype.name, shape, profile))
            else:
                self._output_names.append(name)
                outputs.append(TensorSpec(name, dtype.name, shape))
        return inputs, outputs

    # ---- infer -----------------------------------------------------------------------------------------
    def _select_profile(self, feeds: dict[str, np.ndarray]) -> None:
        if len(self._engine_profiles()) <= 1:
            return
        for p in self._engine_profiles():
            if all(
                all(lo <= d <= hi for d, lo, hi in zip(arr.shape, *self._profiles[n][p]))
                for n, arr in feeds.items()
                if n in self._profiles
            ):
                if p != self._profile:
                    stream = self._require_stream()
                    if not self._context.set_optimization_profile_async(p, stream.handle):
                        raise EngineError(f"{self.flavour}: could not switch to optimization profile {p}")
                    self._profile = p
                    self._shapes.clear()
                return
        shapes = {n: list(a.shape) for n, a in feeds.items()}
        raise EngineError(f"{self.flavour}: input shapes {shapes} fit none of the plan's optimization profiles")

    def _engine_profiles(self) -> range:
        return range(int(self._engine.num_optimization_profiles))

    def _require_stream(self) -> cuda.Stream:
        if self._stream is None:
            raise EngineError(f"{self.flavour}: backend is not loaded")
        return self._stream

    def _set_shapes(self, feeds: dict[str, np.ndarray]) -> None:
        changed = any(self._shapes.get(n) != a.shape for n, a in feeds.items())
        if not changed:
            return
        self._select_profile(feeds)
        for name, arr in feeds.items():
            if not self._context.set_input_shape(name, arr.shape):
                raise EngineError(f"{self.flavour}: input {name!r} shape {list(arr.shape)} rejected by the engine")
            self._buffers[name].ensure(arr.shape)
            self._shapes[name] = arr.shape
        self._dynamic_outputs.clear()
        for name in self._output_names:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):  # data-dependent (e.g. an NMS layer): TensorRT asks the allocator
                if self._allocator is None:
                    self._allocator = make_output_allocator(self._trt)
                self._context.set_output_allocator(name, self._allocator)
                self._dynamic_outputs.add(name)
            else:
                self._buffers[name].ensure(shape)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stream = self._require_stream()
        self._set_shapes(feeds)
        for name, arr in feeds.items():
            buf = self._buffers[name]
            np.copyto(buf.array(), arr)
            self._context.set_tensor_address(name, buf.device_ptr)
        for name in self._output_names:
            if name not in self._dynamic_outputs:
                self._context.set_tensor_address(name, self._buffers[name].device_ptr)
        e0, e1, e2, e3 = self._events
        e0.record(stream)
        for name in self._input_names:
            self._buffers[name].to_device(stream)
        e1.record(stream)
        if not self._context.execute_async_v3(stream.handle):
            errors = "; ".join(self._logger.errors[-2:]) or "no reason logged"
            raise EngineError(f"{self.flavour}: execute_async_v3 failed ({errors})")
        e2.record(stream)
        for name in self._output_names:
            if name not in self._dynamic_outputs:
                self._buffers[name].to_host(stream)
        e3.record(stream)
        stream.synchronize()
        out: dict[str, np.ndarray] = {}
        for name in self._output_names:
            if name in self._dynamic_outputs:
                out[name] = self._fetch_dynamic(name, stream)
            else:
                out[name] = self._buffers[name].array().copy()
        if not self.mapped:
            self._stages["h2d"] = e0.elapsed_ms(e1)
            self._stages["d2h"] = e2.elapsed_ms(e3)
        self._stages["compute"] = e1.elapsed_ms(e2)
        return out

    def _fetch_dynamic(self, name: str, stream: cuda.Stream) -> np.ndarray:
        shape = self._allocator.shapes.get(name)
        if shape is None:
            raise EngineError(
                f"{self.flavour}: output {name!r} has a data-dependent shape that TensorRT never reported"
            )
        host = np.empty(shape, dtype=self._buffers[name].dtype)
        if host.nbytes:
            cuda.copy_async(host.ctypes.data, self._allocator.buffers[name].ptr, host.nbytes, "d2h", stream)
            stream.synchronize()
        return host

    # ---- close -----------------------------------------------------------------------------------------
    def _close(self) -> None:
        try:
            self._finish()
        finally:
            self._context = None
            self._engine = None
            self._runtime = None
            for buf in self._buffers.values():
                buf.release()
            if self._allocator is not None:
                self._allocator.close()
                self._allocator = None
            for ev in self._events:
                ev.close()
            if self._stream is not None:
                self._stream.close()
                self._stream = None
