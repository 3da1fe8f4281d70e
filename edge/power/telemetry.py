"""Temperatures, GPU load, power rails, mode and clocks: sampled on a timer, latest sample kept.

On a Jetson everything comes from files under the sysroot (no root, no subprocess per sample):

- ``/sys/class/thermal/thermal_zone*/{type,temp}`` in millidegrees (``cv*`` zones may refuse a read
  with EAGAIN while the engine sleeps: skipped; offline zones read -256000: skipped);
- GPU load ``/sys/devices/platform/gpu.0/load`` in per mille, else ``load`` beside the devfreq device
  whose of_node is ``ga10b``;
- INA3221 rails ``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in<N>_label``, ``in<N>_input`` (mV),
  ``curr<N>_input`` (mA); channels labelled ``NC`` (not connected, on AGX Orin) are noise and skipped;
- the mode id from ``/var/lib/nvpmodel/status`` named from ``/etc/nvpmodel.conf``; clocks from sysfs.

On desktops NVML (``pynvml`` from nvidia-ml-py) gives per-GPU power, temperature and utilisation.
:class:`TelemetrySampler` runs either on a thread; ``latest()`` is what metrics read.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import PowerError
from edge.power import device

log = logging.getLogger(__name__)

THERMAL_DIR = "sys/class/thermal"
INA3221_DIR = "sys/bus/i2c/drivers/ina3221"
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # the module's input: the board's total


@dataclass(frozen=True)
class Rail:
    name: str
    voltage_v: float
    current_a: float

    @property
    def power_w(self) -> float:
        return self.voltage_v * self.current_a


@dataclass(frozen=True)
class GpuReading:
    """One desktop GPU through NVML (fields are None where the GPU does not report them)."""

    index: int
    name: str
    temperature_c: float | None
    utilization_pct: float | None
    power_w: float | None


@dataclass(frozen=True)
class TelemetrySample:
    time: float  # time.time() of the reading
    source: str  # "jetson" or "nvml"
    temperatures_c: dict[str, float] = field(default_factory=dict)
    gpu_load_pct: float | None = None
    rails: tuple[Rail, ...] = ()
    power_w: float | None = None  # total: VDD_IN on a Jetson, sum of GPUs with NVML
    mode: str | None = None
    mode_id: int | None = None
    clocks_pinned: bool | None = None
    gpus: tuple[GpuReading, ...] = ()

    @property
    def max_temperature(self) -> tuple[str, float] | None:
        """The hottest zone and its temperature, or None without readings."""
        temps = dict(self.temperatures_c)
        for gpu in self.gpus:
            if gpu.temperature_c is not None:
                temps[f"gpu{gpu.index}"] = gpu.temperature_c
        if not temps:
            return None
        zone = max(temps, key=lambda k: temps[k])
        return zone, temps[zone]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (rails with their power), for ``--json``, /metrics and events."""
        data = asdict(self)
        data["rails"] = [
            {"name": r.name, "voltage_v": r.voltage_v, "current_a": r.current_a, "power_w": round(r.power_w, 4)}
            for r in self.rails
        ]
        return data


def read_thermal(sysroot: str | Path) -> dict[str, float]:
    temps: dict[str, float] = {}
    base = device.path_in(sysroot, THERMAL_DIR)
    try:
        zones = sorted(base.glob("thermal_zone*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
    except OSError:
        return temps
    for zone in zones:
        name = (device.read_text(zone / "type") or zone.name).strip()
        raw = device.read_text(zone / "temp")  # None on EAGAIN (cv* zones) and other refusals
        try:
            milli = int((raw or "").strip())
        except ValueError:
            continue
        if milli <= -40000:  # offline zones read -256000
            continue
        key = name if name not in temps else f"{name}.{zone.name}"
        temps[key] = milli / 1000.0
    return temps


def read_gpu_load(sysroot: str | Path) -> float | None:
    """GPU load in percent (the files hold per mille)."""
    paths = [device.path_in(sysroot, p) for p in device.GPU_LOAD_PATHS]
    devfreq = device.gpu_devfreq(sysroot)
    if devfreq is not None:
        paths.append(devfreq / "device" / "load")
    for path in paths:
        text = device.read_text(path)
        if text is not None and text.strip().isdigit():
            return int(text.strip()) / 10.0
    return None


def read_rails(sysroot: str | Path) -> tuple[Rail, ...]:
    rails: list[Rail] = []
    base = device.path_in(sysroot, INA3221_DIR)
    try:
        hwmons = sorted(base.glob("*/hwmon/hwmon*"))
    except OSError:
        return ()
    for hwmon in hwmons:
        for label_file in sorted(hwmon.glob("in*_label")):
            n = label_file.name[2 : -len("_label")]
            label = (device.read_text(label_file) or "").strip()
            volts = device.read_text(hwmon / f"in{n}_input")
            amps = device.read_text(hwmon / f"curr{n}_input")
            if not label or label.upper() == "NC" or volts is None or amps is None:
                continue  # "NC": an unconnected channel (AGX Orin); "sum of shunt voltages" has no current
            try:
                rails.append(Rail(label, int(volts) / 1000.0, int(amps) / 1000.0))
            except ValueError:
                continue
    return tuple(rails)


class JetsonTelemetry:
    """Reads one :class:`TelemetrySample` from a Jetson's files under ``sysroot``."""

    def __init__(self, sysroot: str | Path = "/") -> None:
        self.sysroot = Path(sysroot)
        self._modes = device.read_conf(sysroot)

    def __call__(self) -> TelemetrySample:
        rails = read_rails(self.sysroot)
        total = next((r.power_w for r in rails if r.name in TOTAL_RAILS), None)
        if total is None and rails:
            total = sum(r.power_w for r in rails)
        mode_id = device.read_status_id(self.sysroot)
        mode = self._modes.by_id(mode_id) if (self._modes and mode_id is not None) else None
        return TelemetrySample(
            time=time.time(),
            source="jetson",
            temperatures_c=read_thermal(self.sysroot),
            gpu_load_pct=read_gpu_load(self.sysroot),
            rails=rails,
            power_w=total,
            mode=mode.name if mode else None,
            mode_id=mode_id,
            clocks_pinned=device.clocks_pinned(self.sysroot),
        )


class NvmlTelemetry:
    """Desktop GPUs through NVML; :class:`PowerError` when nvidia-ml-py or the driver is missing."""

    def __init__(self) -> None:
        from edge.power.nvml import load_nvml

        pynvml = load_nvml()
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise PowerError(f"NVML is not available ({exc}): no NVIDIA driver on this machine") from exc
        self._nvml = pynvml

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass

    def _get(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except self._nvml.NVMLError:
            return None

    def __call__(self) -> TelemetrySample:
        nv = self._nvml
        gpus: list[GpuReading] = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            name = self._get(nv.nvmlDeviceGetName, h)
            temp = self._get(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
            rates = self._get(nv.nvmlDeviceGetUtilizationRates, h)
            util = None if rates is None else rates.gpu
            milliwatts = self._get(nv.nvmlDeviceGetPowerUsage, h)
            gpus.append(
                GpuReading(
                    index=i,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    temperature_c=None if temp is None else float(temp),
                    utilization_pct=None if util is None else float(util),
                    power_w=None if milliwatts is None else milliwatts / 1000.0,
                )
            )
        powers = [g.power_w for g in gpus if g.power_w is not None]
        loads = [g.utilization_pct for g in gpus if g.utilization_pct is not None]
        return TelemetrySample(
            time=time.time(),
            source="nvml",
            gpu_load_pct=max(loads) if loads else None,
            power_w=sum(powers) if powers else None,
            gpus=tuple(gpus),
        )


def open_telemetry(sysroot: str | Path = "/") -> Callable[[], TelemetrySample]:
    """The reader for this machine: Jetson files, else NVML; :class:`PowerError` when neither is there."""
    if device.jetson_info(sysroot) is not None:
        return JetsonTelemetry(sysroot)
    return NvmlTelemetry()


class TelemetrySampler:
    """Calls ``read`` every ``interval`` seconds on a daemon thread and keeps the latest sample.

    ``on_sample`` runs on that thread after each reading (the power policy evaluates there);
    :meth:`wake` asks for a reading now. A failing read is logged once per message, never raised.
    """

    def __init__(
        self,
        read: Callable[[], TelemetrySample],
        interval: float = 2.0,
        on_sample: Callable[[TelemetrySample], None] | None = None,
    ) -> None:
        if interval <= 0:
            raise PowerError(f"telemetry interval must be more than 0 seconds, got {interval}")
        self.read = read
        self.interval = interval
        self.on_sample = on_sample
        self._latest: TelemetrySample | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error = ""

    def latest(self) -> TelemetrySample | None:
        with self._lock:
            return self._latest

    def sample(self) -> TelemetrySample | None:
        """Read now (on the caller's thread), keep and hand on the result; None when the read failed."""
        try:
            sample = self.read()
        except Exception as exc:  # a sysfs hiccup must not stop the pipeline
            if str(exc) != self._last_error:
                log.warning("telemetry read failed: %s", exc)
                self._last_error = str(exc)
            return None
        with self._lock:
            self._latest = sample
        if self.on_sample is not None:
            self.on_sample(sample)
        return sample

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="edge-power-telemetry", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.sample()
            self._wake.wait(self.interval)
            self._wake.clear()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
