"""Telemetry from a Jetson sysroot's real-format sysfs files, NVML on desktops, and the sampler thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge.errors import PowerError
from edge.power.telemetry import (
    JetsonTelemetry,
    NvmlTelemetry,
    Rail,
    TelemetrySample,
    TelemetrySampler,
    open_telemetry,
    read_gpu_load,
)

from .conftest import MODULES


@pytest.mark.parametrize("module", list(MODULES))
def test_jetson_sample(module: str, make_jetson) -> None:
    jetson = make_jetson(module)
    sample = open_telemetry(jetson.root)()
    assert sample.source == "jetson"
    # cv0 (unreadable, like EAGAIN) and the offline soc2 zone (-256000) are skipped.
    assert sample.temperatures_c == {
        "cpu-thermal": 48.5,
        "gpu-thermal": 47.25,
        "soc0-thermal": 46.0,
        "tj-thermal": 49.125,
    }
    assert sample.max_temperature == ("tj-thermal", 49.125)
    assert sample.gpu_load_pct == pytest.approx(37.2)
    assert sample.rails == (
        Rail("VDD_IN", 5.056, 1.496),
        Rail("VDD_CPU_GPU_CV", 5.048, 0.384),
        Rail("VDD_SOC", 5.048, 0.6),
    )
    assert sample.power_w == pytest.approx(5.056 * 1.496)  # VDD_IN is the module's total
    assert (sample.mode_id, sample.mode) == (jetson.default, jetson.modes[jetson.default])
    assert sample.clocks_pinned is False
    data = sample.as_dict()
    assert data["rails"][0] == {"name": "VDD_IN", "voltage_v": 5.056, "current_a": 1.496, "power_w": 7.5638}


def test_gpu_load_from_devfreq_when_gpu0_is_absent(make_jetson) -> None:
    jetson = make_jetson("agx-orin-64gb")
    (jetson.root / "sys/devices/platform/gpu.0/load").unlink()
    (jetson.root / "sys/class/devfreq/17000000.gpu/device/load").write_text("815\n")
    assert read_gpu_load(jetson.root) == pytest.approx(81.5)
    (jetson.root / "sys/class/devfreq/17000000.gpu/device/of_node/name").write_text("vic\0")
    assert read_gpu_load(jetson.root) is None


def test_mode_follows_the_status_file(make_jetson) -> None:
    jetson = make_jetson("orin-nx-16gb", super_flash=True)
    reader = JetsonTelemetry(jetson.root)
    (jetson.root / "var/lib/nvpmodel/status").write_text("pmode:0004 fmode:cool\n")
    assert (reader().mode_id, reader().mode) == (4, "40W")


def test_nvml_on_this_machine(desktop: Path) -> None:
    # Real NVML: on a machine with an NVIDIA driver it reads each GPU; without one it says so.
    try:
        reader = NvmlTelemetry()
    except PowerError as exc:
        assert str(exc) in (
            "NVML is not available (NVML Shared Library Not Found): no NVIDIA driver on this machine",
            "NVML telemetry needs nvidia-ml-py (`pip install nvidia-ml-py`)",
        )
        with pytest.raises(PowerError):
            open_telemetry(desktop)
        return
    try:
        sample = reader()
    finally:
        reader.close()
    assert sample.source == "nvml" and len(sample.gpus) >= 1
    assert all(g.name for g in sample.gpus)
    assert sample.power_w is None or sample.power_w > 0


def test_sampler_thread_keeps_the_latest_sample(make_jetson) -> None:
    jetson = make_jetson("orin-nano-8gb")
    seen: list[TelemetrySample] = []
    second = threading.Event()

    def on_sample(sample: TelemetrySample) -> None:
        seen.append(sample)
        if len(seen) == 2:
            second.set()

    sampler = TelemetrySampler(JetsonTelemetry(jetson.root), interval=3600, on_sample=on_sample)
    assert sampler.latest() is None
    sampler.start()
    jetson.set_temp("gpu-thermal", 91000)
    sampler.wake()  # a reading now, not in an hour
    assert second.wait(10)
    sampler.stop()
    assert not sampler.running
    latest = sampler.latest()
    assert latest is seen[-1]
    assert latest is not None and latest.temperatures_c["gpu-thermal"] == 91.0


def test_sampler_logs_a_failing_read_and_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def read() -> TelemetrySample:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("[Errno 11] Resource temporarily unavailable")
        return TelemetrySample(1.0, "jetson", {"cv0-thermal": 40.0})

    sampler = TelemetrySampler(read, interval=1)
    assert sampler.sample() is None
    assert sampler.sample() is None
    assert sampler.sample() is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["telemetry read failed: [Errno 11] Resource temporarily unavailable"]  # once, not per tick
    with pytest.raises(PowerError) as err:
        TelemetrySampler(read, interval=0)
    assert str(err.value) == "telemetry interval must be more than 0 seconds, got 0"
