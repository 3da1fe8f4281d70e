"""Discrete NVIDIA GPUs: NVML (``nvidia-ml-py``) or ``nvidia-smi``, and compute capability -> target."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from edge.errors import first_line

# Which target a discrete GPU's compute capability selects (PLATFORMS.md "RTX and other desktop GPUs").
CC_TARGETS = {
    "7.5": "rtx-turing",
    "8.0": "a100",
    "8.6": "rtx-ampere",
    "8.9": "rtx-ada",
    "9.0": "hopper",
    "12.0": "rtx-blackwell",
}
# Compute capabilities TensorRT for RTX builds for and runs on (TENSORRT.md; not 8.7 Jetson, not 9.0 Hopper).
RTX_COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
SMI_QUERY = ("--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str | None
    driver_version: str | None


@dataclass(frozen=True)
class GpuQuery:
    """What one way of asking found: ``gpus`` (None when the tool could not answer) and a note why."""

    gpus: tuple[GpuInfo, ...] | None
    note: str
    cuda_version: str | None = None


def query_nvml() -> GpuQuery:
    """Ask the driver through NVML; ``gpus`` is None when nvidia-ml-py or the driver library is absent."""
    try:
        import pynvml
    except ImportError:
        return GpuQuery(None, "NVML: nvidia-ml-py not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return GpuQuery(None, f"NVML: {exc}")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = _cuda_from_int(pynvml.nvmlSystemGetCudaDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(GpuInfo(_text(pynvml.nvmlDeviceGetName(handle)), f"{major}.{minor}", driver))
        return GpuQuery(tuple(gpus), f"NVML: {len(gpus)} GPU(s)", cuda)
    except pynvml.NVMLError as exc:
        return GpuQuery(None, f"NVML: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def query_nvidia_smi(command: str) -> GpuQuery:
    """Run ``nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader``.

    ``command`` is a name looked up on PATH or a path; ``gpus`` is None when it is absent or fails.
    """
    exe = shutil.which(command)
    if exe is None:
        return GpuQuery(None, f"nvidia-smi: {command!r} not found")
    try:
        proc = subprocess.run([exe, *SMI_QUERY], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return GpuQuery(None, f"nvidia-smi: {exe} could not run ({exc})")
    if proc.returncode != 0:
        detail = first_line(proc.stdout) or first_line(proc.stderr, "no output")
        return GpuQuery(None, f"nvidia-smi: exit code {proc.returncode}: {detail}")
    gpus = parse_smi_csv(proc.stdout)
    return GpuQuery(gpus, f"nvidia-smi: {len(gpus)} GPU(s)")


def parse_smi_csv(text: str) -> tuple[GpuInfo, ...]:
    """Rows of ``name, compute_cap, driver_version``; ``[N/A]`` fields become None."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.rsplit(",", 2)]
        while len(fields) < 3:
            fields.append("")
        name, cc, driver = fields
        gpus.append(GpuInfo(name, _known(cc), _known(driver)))
    return tuple(gpus)


def _known(value: str) -> str | None:
    return None if not value or value.startswith("[") or value.upper() == "N/A" else value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_from_int(value: int) -> str | None:
    """NVML's 12040 -> ``"12.4"``."""
    return f"{value // 1000}.{(value % 1000) // 10}" if value else None
