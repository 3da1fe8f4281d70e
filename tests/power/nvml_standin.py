"""TEST DOUBLE at the hardware boundary: an NVML stand-in with pynvml's real names, units and exceptions.

What it models (read from nvidia-ml-py's own ``pynvml.py``): the function names and argument order the
kit calls (``nvmlInit``, ``nvmlDeviceGetCount``, ``nvmlDeviceGetHandleByIndex``/``ByUUID``,
``nvmlDeviceGetName``/``UUID``, ``nvmlDeviceGetPowerManagementLimit``, ``...LimitConstraints`` returning
``[min, max]``, ``...DefaultLimit``, ``nvmlDeviceGetEnforcedPowerLimit``, ``nvmlDeviceSetPowerManagementLimit``,
``nvmlDeviceGetPowerUsage``, ``nvmlDeviceGetTotalEnergyConsumption``, ``nvmlDeviceSetGpuLockedClocks``,
``nvmlDeviceResetGpuLockedClocks``, ``nvmlDeviceGetMaxClockInfo``, temperature and utilisation), power in
**milliwatts** and energy in millijoules, and the real exception classes from pynvml:
``NVMLError_NoPermission`` for every setter when not root, ``NVMLError_NotSupported`` on a GPU that
does not offer the call (laptop GPUs), ``NVMLError_InvalidArgument`` for a limit outside the
constraints or a locked-clock range above the maximum (as the driver answers),
``NVMLError_LibraryNotFound`` from ``nvmlInit`` when no driver is there.

What it does not model: the driver's own clamping by other limiters (thermal, board), power draw
that follows the limit, MIG, vGPU, the ``_v2`` power-scope API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pynvml

NVMLError = pynvml.NVMLError
NVMLError_NoPermission = pynvml.NVMLError_NoPermission
NVMLError_NotSupported = pynvml.NVMLError_NotSupported
NVMLError_InvalidArgument = pynvml.NVMLError_InvalidArgument
NVMLError_LibraryNotFound = pynvml.NVMLError_LibraryNotFound
NVMLError_NotFound = pynvml.NVMLError_NotFound
NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
NVML_CLOCK_GRAPHICS = pynvml.NVML_CLOCK_GRAPHICS


@dataclass
class Gpu:
    """One board: name, UUID, default limit and constraints (mW), clocks (MHz), what it refuses."""

    name: str
    uuid: str
    default_mw: int
    min_mw: int
    max_mw: int
    max_clock_mhz: int = 2520
    limit_mw: int = 0  # 0: the default
    locked: tuple[int, int] | None = None
    power_mw: int = 35000
    energy_mj: int = 0
    temperature_c: int = 41
    utilization: int = 3
    limit_supported: bool = True
    clocks_supported: bool = True

    def __post_init__(self) -> None:
        self.limit_mw = self.limit_mw or self.default_mw


class Utilization:
    def __init__(self, gpu: int) -> None:
        self.gpu, self.memory = gpu, 0


class FakeNvml:
    """Stands in for the ``pynvml`` module: pass it where the kit calls ``load_nvml()``."""

    NVMLError = NVMLError
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_CLOCK_GRAPHICS = NVML_CLOCK_GRAPHICS

    def __init__(self, gpus: list[Gpu], *, root: bool = True, driver: bool = True) -> None:
        self.gpus = gpus
        self.root = root
        self.driver = driver
        self.inits = 0
        self.setters: list[tuple[Any, ...]] = []

    # -- library ---------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if not self.driver:
            raise NVMLError_LibraryNotFound()
        self.inits += 1

    def nvmlShutdown(self) -> None:
        self.inits -= 1

    def _live(self) -> None:
        if self.inits <= 0:
            raise pynvml.NVMLError_Uninitialized()

    def nvmlDeviceGetCount(self) -> int:
        self._live()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Gpu:
        self._live()
        if not 0 <= index < len(self.gpus):
            raise NVMLError_InvalidArgument()
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> Gpu:
        self._live()
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in self.gpus:
            if gpu.uuid == text:
                return gpu
        raise NVMLError_NotFound()

    def nvmlDeviceGetName(self, h: Gpu) -> str:
        return h.name

    def nvmlDeviceGetUUID(self, h: Gpu) -> str:
        return h.uuid

    # -- power -----------------------------------------------------------------------------------
    def _supported(self, h: Gpu, what: bool) -> None:
        if not what:
            raise NVMLError_NotSupported()

    def nvmlDeviceGetPowerManagementLimit(self, h: Gpu) -> int:
        self._supported(h, h.limit_supported)
        return h.limit_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: Gpu) -> list[int]:
        self._supported(h, h.limit_supported)
        return [h.min_mw, h.max_mw]

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: Gpu) -> int:
        self._supported(h, h.limit_supported)
        return h.default_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Gpu) -> int:
        self._supported(h, h.limit_supported)
        return h.limit_mw

    def nvmlDeviceSetPowerManagementLimit(self, h: Gpu, limit: int) -> None:
        self.setters.append(("limit", h.uuid, limit))
        if not self.root:
            raise NVMLError_NoPermission()
        self._supported(h, h.limit_supported)
        if not h.min_mw <= limit <= h.max_mw:
            raise NVMLError_InvalidArgument()
        h.limit_mw = int(limit)

    def nvmlDeviceGetPowerUsage(self, h: Gpu) -> int:
        return min(h.power_mw, h.limit_mw)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: Gpu) -> int:
        return h.energy_mj

    def nvmlDeviceGetTemperature(self, h: Gpu, sensor: int) -> int:
        return h.temperature_c

    def nvmlDeviceGetUtilizationRates(self, h: Gpu) -> Utilization:
        return Utilization(h.utilization)

    # -- clocks ----------------------------------------------------------------------------------
    def nvmlDeviceGetMaxClockInfo(self, h: Gpu, clock_type: int) -> int:
        return h.max_clock_mhz

    def nvmlDeviceSetGpuLockedClocks(self, h: Gpu, minGpuClockMHz: int, maxGpuClockMHz: int) -> None:
        self.setters.append(("lock", h.uuid, minGpuClockMHz, maxGpuClockMHz))
        if not self.root:
            raise NVMLError_NoPermission()
        self._supported(h, h.clocks_supported)
        if minGpuClockMHz > maxGpuClockMHz:
            raise NVMLError_InvalidArgument()
        h.locked = (minGpuClockMHz, maxGpuClockMHz)

    def nvmlDeviceResetGpuLockedClocks(self, h: Gpu) -> None:
        self.setters.append(("reset", h.uuid))
        if not self.root:
            raise NVMLError_NoPermission()
        self._supported(h, h.clocks_supported)
        h.locked = None


def rtx_box() -> list[Gpu]:
    """Two boards as NVML reports them: an RTX 4090 (450 W default, 150-600 W) and an RTX 3090 (350 W, 100-400 W)."""
    return [
        Gpu("NVIDIA GeForce RTX 4090", "GPU-4090aaaa-0000-0000-0000-000000000000", 450000, 150000, 600000, 3105),
        Gpu("NVIDIA GeForce RTX 3090", "GPU-3090bbbb-0000-0000-0000-000000000000", 350000, 100000, 400000, 2100),
    ]
