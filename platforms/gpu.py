"""Discrete NVIDIA GPUs: NVML (``nvidia-ml-py``) or ``nvidia-smi``, and compute capability -> target."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from edge.errors import ConfigError, first_line

# Which target a discrete GPU's compute capability selects (docs/platforms.md "RTX and other desktop GPUs").
CC_TARGETS = {
    "7.5": "rtx-turing",
    "8.0": "a100",
    "8.6": "rtx-ampere",
    "8.9": "rtx-ada",
    "9.0": "hopper",
    "12.0": "rtx-blackwell",
}
# Compute capabilities TensorRT for RTX builds for and runs on (docs/platforms.md TensorRT flavours; not 8.7 Jetson, not 9.0 Hopper).
RTX_COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
SMI_QUERY = ("--query-gpu=index,uuid,name,compute_cap,driver_version", "--format=csv,noheader")


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as the driver numbers it (NVML / nvidia-smi: PCI bus order) with its UUID.

    CUDA numbers devices differently (fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, and
    ``CUDA_VISIBLE_DEVICES`` renumbers them), so a chosen GPU reaches CUDA as its ``uuid``.
    """

    name: str
    compute_capability: str | None
    driver_version: str | None
    index: int = 0
    uuid: str | None = None

    def label(self) -> str:
        return f"GPU {self.index} '{self.name}' (sm {self.compute_capability or '?'}, {self.uuid or 'no UUID'})"


def choose_gpu(gpus: tuple[GpuInfo, ...], spec: str | int | None) -> GpuInfo | None:
    """The GPU named by ``--gpu INDEX|UUID`` (GPU 0 when ``spec`` is None), or a ConfigError listing them.

    INDEX is nvidia-smi's index; a UUID (``GPU-...`` as nvidia-smi -L prints it) may be shortened to any
    unique prefix of at least 8 characters, as ``CUDA_VISIBLE_DEVICES`` accepts.
    """
    if spec is None or spec == "":
        return gpus[0] if gpus else None
    text = str(spec).strip()
    if not gpus:
        raise ConfigError(f"--gpu {text}: this machine has no NVIDIA GPU (see `edge info`)")
    if text.isdigit():
        found = [g for g in gpus if g.index == int(text)]
    elif len(text) >= 8 and text.lower().startswith(("gpu-", "mig-")):
        found = [g for g in gpus if g.uuid and g.uuid.lower().startswith(text.lower())]
    else:
        raise ConfigError(f"--gpu {text!r}: give a GPU index (0, 1, ...) or UUID (GPU-...) as `edge info` lists them")
    if len(found) != 1:
        have = "; ".join(g.label() for g in gpus)
        what = "matches several GPUs" if found else "is not a GPU of this machine"
        raise ConfigError(f"--gpu {text}: {what} (this machine: {have})")
    return found[0]


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
            uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
            name = _text(pynvml.nvmlDeviceGetName(handle))
            gpus.append(GpuInfo(name, f"{major}.{minor}", driver, index, uuid))
        return GpuQuery(tuple(gpus), f"NVML: {len(gpus)} GPU(s)", cuda)
    except pynvml.NVMLError as exc:
        return GpuQuery(None, f"NVML: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def query_nvidia_smi(command: str) -> GpuQuery:
    """Run ``nvidia-smi --query-gpu=index,uuid,name,compute_cap,driver_version --format=csv,noheader``.

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
    """Rows of ``index, uuid, name, compute_cap, driver_version`` (or, from older queries, the last three
    alone: the index is then the row number); ``[N/A]`` fields become None; a name may hold commas."""
    gpus: list[GpuInfo] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        index, uuid = len(gpus), None
        head = [f.strip() for f in line.split(",", 2)]
        if len(head) == 3 and head[0].isdigit() and head[1].upper().startswith(("GPU-", "MIG-")):
            index, uuid, line = int(head[0]), head[1], head[2]
        fields = [f.strip() for f in line.rsplit(",", 2)]
        while len(fields) < 3:
            fields.append("")
        name, cc, driver = fields
        gpus.append(GpuInfo(name, _known(cc), _known(driver), index, uuid))
    return tuple(gpus)


def _known(value: str) -> str | None:
    return None if not value or value.startswith("[") or value.upper() == "N/A" else value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cuda_from_int(value: int) -> str | None:
    """NVML's 12040 -> ``"12.4"``."""
    return f"{value // 1000}.{(value % 1000) // 10}" if value else None
