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
from edge.backends.compat import Device, plan_problem
from edge.backends.trt_logger import process_logger
from edge.errors import EngineError
from edge.manifest import Artifact, TensorSpec

log = logging.getLogger(__name__)


def make_logger(trt: Any) -> Any:
    """The process's one TensorRT logger for ``trt`` (see :mod:`edge.backends.trt_logger`)."""
    return process_logger(trt)


def numpy_dtype(trt: Any, dtype: Any, tensor: str, flavour: str) -> np.dtype[Any]:
    """``trt.nptype`` as a numpy dtype, or an EngineError naming the tensor whose type numpy lacks."""
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:
        kind = getattr(dtype, "name", str(dtype))
        raise EngineError(
            f"{flavour}: I/O tensor {tensor!r} is {kind}, which numpy has no type for (BF16, FP8, INT4 and FP4 "
            "I/O cannot be fed from host arrays); export the model with FP32/FP16 inputs and outputs (cast inside "
            "the graph) and rebuild the bundle"
        ) from None


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
        device: int | str = 0,
    ) -> None:
        super().__init__(inputs, outputs)
        self._plan = plan
        self.artifact = artifact
        self._mapped_opt = mapped
        self._device_request = device  # a CUDA ordinal, or a GPU UUID resolved to one at load
        self._device = device if isinstance(device, int) else 0
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
    def check_plan(self, info: cuda.DeviceInfo, library_version: str, dla_cores: int = 0) -> None:
        """Refuse, before deserializing, a plan the manifest says was built for another GPU, version or DLA core.

        ``dla_cores`` is what the runtime reports (``Runtime.num_DLA_cores``), so a plan for DLA core 1 on a
        device with one core (or none) is refused here instead of failing inside TensorRT.
        """
        if self.artifact is None:
            return
        device = Device(
            compute_capability=info.compute_capability,
            tensorrt_version=library_version if self.artifact.backend == "tensorrt" else None,
            tensorrt_rtx_version=library_version if self.artifact.backend == "tensorrt-rtx" else None,
            l4t_version=self.artifact.l4t_version,  # L4T is checked at selection (platforms.detect)
            dla_cores=dla_cores,
        )
        why = plan_problem(self.artifact, device)
        if why:
            raise EngineError(
                f"{self.flavour}: {self.artifact.file} cannot run on this GPU ({info.name}): {why}; "
                + self.rebuild_hint()
            )

    def rebuild_hint(self) -> str:
        target = ",".join(self.artifact.targets) if self.artifact and self.artifact.targets else "<this target>"
        return (
            f"rebuild the bundle for this machine with `edge build MODEL.onnx --target {target} -o BUNDLE --force` "
            "(on the device itself for classic TensorRT: scripts/build_engine.py) or use --backend onnxruntime"
        )

    def _check_validity(self, runtime: Any) -> None:
        """The library's own plan check before deserializing (``Runtime.get_engine_validity``, TensorRT-RTX)."""

    def _open_runtime(self, trt: Any, info: cuda.DeviceInfo) -> Any:
        """The ``trt.Runtime`` for this plan, checked against the device and configured, ready to deserialize."""
        runtime = trt.Runtime(self._logger)
        if runtime is None:
            raise EngineError(f"{self.flavour}: could not create a runtime (see the log)")
        self.check_plan(info, self._library_version(trt), int(getattr(runtime, "num_DLA_cores", 0) or 0))
        self._configure_runtime(runtime)
        self._check_validity(runtime)
        return runtime

    def _load(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        ok, why = cuda.cuda_available()
        if not ok:
            raise EngineError(f"{self.flavour}: no usable CUDA GPU ({why}); use --backend onnxruntime-cpu")
        trt = self._trt = self._import_trt()
        self._device = cuda.resolve_device(self._device_request)
        cuda.call("cudaSetDevice", self._device)
        info = cuda.device_info(self._device)
        self._logger = make_logger(trt)
        self._runtime = self._open_runtime(trt, info)
        with self._logger.collect() as errors:
            self._engine = self._runtime.deserialize_cuda_engine(self._plan)
        if self._engine is None:
            why = "; ".join(errors[-2:]) or "no reason logged"
            raise EngineError(f"{self.flavour}: could not deserialize the plan ({why}); " + self.rebuild_hint())
        self._stream = cuda.Stream()  # on this backend's device (set above): the context runs on it
        self._events = [cuda.Event() for _ in range(4)]
        self._context = self._create_context(self._engine)
        if self._context is None:
            raise EngineError(f"{self.flavour}: could not create an execution context (GPU memory?)")
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
            dtype = numpy_dtype(trt, engine.get_tensor_dtype(name), name, self.flavour)
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

    def _set_address(self, name: str, ptr: int) -> None:
        if not self._context.set_tensor_address(name, ptr):
            raise EngineError(
                f"{self.flavour}: the engine rejected the address of tensor {name!r} (set_tensor_address returned "
                "False: misaligned or foreign memory, or a name the plan does not have)"
            )

    def _bind(self, feeds: dict[str, np.ndarray]) -> None:
        """Input shapes, host data and every tensor address, on the current context."""
        self._set_shapes(feeds)
        for name, arr in feeds.items():
            buf = self._buffers[name]
            np.copyto(buf.array(), arr)
            self._set_address(name, buf.device_ptr)
        for name in self._output_names:
            if name not in self._dynamic_outputs:
                self._set_address(name, self._buffers[name].device_ptr)

    def _context_replaced(self, stream: cuda.Stream) -> bool:
        """Flavour check once shapes and addresses are bound, before the first execution (TensorRT-RTX:
        CUDA graph capturability); True when it replaced the execution context."""
        return False

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stream = self._require_stream()
        # CUDA's current device is per thread: a backend loaded on GPU 1 may be called from another thread
        cuda.call("cudaSetDevice", self._device)
        self._bind(feeds)
        if self._context_replaced(stream):  # a fresh context knows no shapes or addresses yet
            self._profile = 0
            self._shapes.clear()
            self._bind(feeds)
        e0, e1, e2, e3 = self._events
        e0.record(stream)
        for name in self._input_names:
            self._buffers[name].to_device(stream)
        e1.record(stream)
        with self._logger.collect() as errors:
            ok = self._context.execute_async_v3(stream.handle)
        if not ok:
            why = "; ".join(errors[-2:]) or "no reason logged"
            raise EngineError(f"{self.flavour}: execute_async_v3 failed ({why})")
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
    def _device_ready(self) -> bool:
        return self._stream is not None

    # The order TensorRT objects are released in: what uses an object goes before it (the context before
    # its runtime config and cache, all of them before the engine, the engine before its runtime).
    RELEASE_ORDER: ClassVar[tuple[str, ...]] = ("_context", "_engine", "_runtime")

    def _close(self) -> None:
        try:
            if self._device_ready():
                cuda.call("cudaSetDevice", self._device)
            self._finish()
        finally:
            for attr in self.RELEASE_ORDER:
                setattr(self, attr, None)
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
