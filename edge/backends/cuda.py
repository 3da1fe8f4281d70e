"""CUDA from Python without PyTorch: cuda-python's ``cuda.bindings.runtime``, every call checked.

- :func:`call` runs a runtime function and raises :class:`EngineError` with ``cudaGetErrorName`` on failure;
- :class:`Stream`, :class:`Event` (timing), :class:`HostBuffer` (pinned, or mapped zero-copy on Jetson's shared
  DRAM: ``cudaHostAllocMapped`` + ``cudaHostGetDevicePointer``), :class:`DeviceBuffer`;
- :class:`TensorBuffers`: one tensor's host and device memory, grown only when a larger shape arrives;
- :func:`cuda_available` -> ``(True, "")`` or ``(False, reason)``.
"""

from __future__ import annotations

import ctypes
import importlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.errors import EngineError


def runtime() -> Any:
    """The ``cuda.bindings.runtime`` module (imported lazily), or an EngineError saying what to install."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError as exc:
        raise EngineError(f"cuda-python is not installed ({exc}); pip install cuda-python") from None


def error_name(err: Any) -> str:
    rt = runtime()
    try:
        res = rt.cudaGetErrorName(err)
        name = res[1]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # an unknown error code
        return str(err)


def check(result: Any, what: str = "CUDA call") -> Any:
    """Unpack ``(err, *values)`` from a cuda-python call: the value(s), or EngineError naming the error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EngineError(f"{what} failed: {error_name(err)} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def call(name: str, *args: Any) -> Any:
    """``cudart.<name>(*args)``, checked."""
    return check(getattr(runtime(), name)(*args), name)


# What the usual "no GPU here" answers of cudaGetDeviceCount mean, for skip reasons and `edge doctor`.
HINTS = {
    "cudaErrorInsufficientDriver": "no NVIDIA driver loaded, or one older than this CUDA runtime",
    "cudaErrorNoDevice": "the driver sees no CUDA device",
    "cudaErrorDevicesUnavailable": "every CUDA device is busy or in exclusive/prohibited compute mode",
    "cudaErrorSystemDriverMismatch": "the kernel driver and the user-mode driver versions differ",
    "cudaErrorCompatNotSupportedOnDevice": "the CUDA forward-compatibility package does not support this GPU",
}


def explain(name: str) -> str:
    """A CUDA error name with what it usually means, e.g. ``cudaErrorNoDevice (the driver sees no ...)``."""
    hint = HINTS.get(name)
    return f"{name} ({hint})" if hint else name


def cuda_available() -> tuple[bool, str]:
    """Whether a CUDA device answers here, and if not, why (missing library, driver, or device)."""
    try:
        rt = runtime()
    except EngineError as exc:
        return False, str(exc)
    try:
        err, count = rt.cudaGetDeviceCount()
    except Exception as exc:  # the CUDA runtime library itself failed to load
        return False, f"CUDA runtime unusable: {exc}"
    if int(err) != 0:
        return False, f"cudaGetDeviceCount: {explain(error_name(err))}"
    if count < 1:
        return False, "no CUDA device found"
    return True, ""


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: str
    integrated: bool  # Jetson: CPU and GPU share DRAM
    can_map_host_memory: bool
    total_memory: int


def device_info(device: int = 0) -> DeviceInfo:
    prop = call("cudaGetDeviceProperties", device)
    name = prop.name.decode(errors="replace").rstrip("\0") if isinstance(prop.name, bytes) else str(prop.name)
    return DeviceInfo(
        name=name,
        compute_capability=f"{prop.major}.{prop.minor}",
        integrated=bool(prop.integrated),
        can_map_host_memory=bool(prop.canMapHostMemory),
        total_memory=int(prop.totalGlobalMem),
    )


def uuid_text(raw: Any) -> str | None:
    """``cudaUUID_t`` (or its 16 bytes) as NVML and nvidia-smi print it: ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``."""
    data = getattr(raw, "bytes", raw)
    if isinstance(data, str):
        data = data.encode("latin-1")
    if not isinstance(data, (bytes, bytearray)) or len(data) < 16:
        return None
    h = bytes(data[:16]).hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def device_uuids() -> list[str | None]:
    """The UUID of every device CUDA sees, in CUDA's ordinal order."""
    count = int(call("cudaGetDeviceCount"))
    return [uuid_text(call("cudaGetDeviceProperties", i).uuid) for i in range(count)]


def resolve_device(device: int | str) -> int:
    """The CUDA ordinal for ``device``: an ordinal (checked against the device count) or a GPU UUID.

    NVML and nvidia-smi number GPUs in PCI bus order while CUDA orders them fastest first (unless
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID``) and ``CUDA_VISIBLE_DEVICES`` hides and renumbers them, so a GPU named
    by the user (``--gpu``) is handed over as its UUID and found here among the devices CUDA sees.
    """
    if isinstance(device, int):
        count = int(call("cudaGetDeviceCount"))
        if not 0 <= device < count:
            raise EngineError(f"CUDA device {device} does not exist (CUDA sees {count} device(s))")
        return device
    uuids = device_uuids()
    wanted = device.strip().lower()
    for ordinal, uuid in enumerate(uuids):
        if uuid is not None and uuid.lower() == wanted:
            return ordinal
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    raise EngineError(
        f"GPU {device} is not among the {len(uuids)} device(s) CUDA sees"
        + (f" (CUDA_VISIBLE_DEVICES={hidden} hides the others)" if hidden is not None else "")
        + "; `edge info` lists the GPUs"
    )


class Stream:
    """One CUDA stream; ``handle`` is the integer TensorRT's ``execute_async_v3`` takes."""

    def __init__(self) -> None:
        self._stream: Any = call("cudaStreamCreate")

    @property
    def raw(self) -> Any:
        return self._stream

    @property
    def handle(self) -> int:
        return int(self._stream)

    def synchronize(self) -> None:
        call("cudaStreamSynchronize", self._stream)

    def close(self) -> None:
        if self._stream is not None:
            call("cudaStreamDestroy", self._stream)
            self._stream = None


class Event:
    """A CUDA event for timing stream work: ``a.record(s); ...; b.record(s); s.synchronize(); a.elapsed_ms(b)``."""

    def __init__(self) -> None:
        self._event: Any = call("cudaEventCreate")

    def record(self, stream: Stream) -> None:
        call("cudaEventRecord", self._event, stream.raw)

    def elapsed_ms(self, end: Event) -> float:
        return float(call("cudaEventElapsedTime", self._event, end._event))

    def close(self) -> None:
        if self._event is not None:
            call("cudaEventDestroy", self._event)
            self._event = None


def _host_array(ptr: int, nbytes: int) -> np.ndarray:
    buf = (ctypes.c_uint8 * nbytes).from_address(ptr)
    return np.frombuffer(memoryview(buf).cast("B"), dtype=np.uint8, count=nbytes)


class HostBuffer:
    """Page-locked host memory of ``nbytes``; ``mapped=True`` also maps it into the GPU's address space."""

    def __init__(self, nbytes: int, mapped: bool = False) -> None:
        self.nbytes = max(1, int(nbytes))
        self.mapped = mapped
        if mapped:
            rt = runtime()
            self.ptr = int(call("cudaHostAlloc", self.nbytes, rt.cudaHostAllocMapped))
            self.device_ptr = int(call("cudaHostGetDevicePointer", self.ptr, 0))
        else:
            self.ptr = int(call("cudaMallocHost", self.nbytes))
            self.device_ptr = 0
        self.bytes = _host_array(self.ptr, self.nbytes)

    def view(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        n = int(np.prod(shape)) * dtype.itemsize
        if n > self.nbytes:
            raise EngineError(f"host buffer of {self.nbytes} bytes is too small for {shape} {dtype}")
        return self.bytes[:n].view(dtype).reshape(shape)

    def close(self) -> None:
        if self.ptr:
            call("cudaFreeHost", self.ptr)
            self.ptr = 0


class DeviceBuffer:
    """``nbytes`` of device memory."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = max(1, int(nbytes))
        self.ptr = int(call("cudaMalloc", self.nbytes))

    def close(self) -> None:
        if self.ptr:
            call("cudaFree", self.ptr)
            self.ptr = 0


def copy_async(dst: int, src: int, nbytes: int, kind: str, stream: Stream) -> None:
    """``cudaMemcpyAsync`` with kind ``"h2d"``, ``"d2h"`` or ``"d2d"``."""
    rt = runtime()
    kinds = {
        "h2d": rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
        "d2h": rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
        "d2d": rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice,
    }
    call("cudaMemcpyAsync", dst, src, nbytes, kinds[kind], stream.raw)


class TensorBuffers:
    """Host and device memory of one I/O tensor, reallocated only when a larger shape needs more bytes.

    With ``mapped=True`` (Jetson) there is one mapped host buffer and no copies: ``device_ptr`` points at it.
    """

    def __init__(self, dtype: np.dtype[Any], mapped: bool = False) -> None:
        self.dtype = dtype
        self.mapped = mapped
        self.host: HostBuffer | None = None
        self.device: DeviceBuffer | None = None
        self.shape: tuple[int, ...] = ()
        self.allocations = 0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def ensure(self, shape: tuple[int, ...]) -> None:
        need = max(1, int(np.prod(shape)) * self.dtype.itemsize)
        if self.host is None or self.host.nbytes < need:
            self.release()
            self.host = HostBuffer(need, mapped=self.mapped)
            self.device = None if self.mapped else DeviceBuffer(need)
            self.allocations += 1
        self.shape = tuple(shape)

    @property
    def device_ptr(self) -> int:
        if self.host is None:
            raise EngineError("tensor buffer used before allocation")
        return self.host.device_ptr if self.mapped else (self.device.ptr if self.device else 0)

    def array(self) -> np.ndarray:
        if self.host is None:
            raise EngineError("tensor buffer used before allocation")
        return self.host.view(self.shape, self.dtype)

    def to_device(self, stream: Stream) -> None:
        if not self.mapped and self.host is not None and self.device is not None and self.nbytes:
            copy_async(self.device.ptr, self.host.ptr, self.nbytes, "h2d", stream)

    def to_host(self, stream: Stream) -> None:
        if not self.mapped and self.host is not None and self.device is not None and self.nbytes:
            copy_async(self.host.ptr, self.device.ptr, self.nbytes, "d2h", stream)

    def release(self) -> None:
        if self.host is not None:
            self.host.close()
            self.host = None
        if self.device is not None:
            self.device.close()
            self.device = None
