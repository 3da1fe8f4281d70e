"""Jetson sysroots and PATH stand-ins: the power tests' only test doubles, at the hardware boundary.

A sysroot is a folder laid out like a Jetson's root filesystem with real-format files: the
``nv_tegra_release`` line, device-tree ``compatible`` (NUL-separated) and ``model``, an
``nvpmodel.conf`` with the module's modes from docs/platforms.md, the nvpmodel status file,
thermal zones, the GPU load and devfreq nodes (JetPack 6 layout by default), CPU online and frequency
files and INA3221 hwmon channels (with AGX Orin's unconnected "NC" channels).
``standins/nvpmodel.py`` and ``standins/jetson_clocks.py`` are put first on PATH as ``nvpmodel`` and
``jetson_clocks``; they act on the sysroot as the real tools act on the device and record each call.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

STANDINS = Path(__file__).parent / "standins"

# module -> (device-tree compatible, model, standard modes, default id, super modes, super default id)
# Modes as docs/platforms.md lists them ("Jetson Orin modules" table).
MODULES: dict[str, tuple[str, str, dict[int, str], int, dict[int, str], int | None]] = {
    "agx-orin-64gb": (
        "nvidia,p3737-0000+p3701-0005\0nvidia,p3701-0005\0nvidia,tegra234\0",
        "NVIDIA Jetson AGX Orin Developer Kit",
        {0: "MAXN", 1: "MODE_15W", 2: "MODE_30W", 3: "MODE_50W"},
        2,
        {},
        None,
    ),
    "agx-orin-32gb": (
        "nvidia,p3737-0000+p3701-0004\0nvidia,p3701-0004\0nvidia,tegra234\0",
        "NVIDIA Jetson AGX Orin",
        {0: "MAXN", 1: "MODE_15W", 2: "MODE_30W", 3: "MODE_40W"},  # nvpmodel_p3701_0004.conf spelling
        2,
        {},
        None,
    ),
    "orin-nx-16gb": (
        "nvidia,p3768-0000+p3767-0000\0nvidia,p3767-0000\0nvidia,tegra234\0",
        "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
        {0: "MAXN", 1: "10W", 2: "15W", 3: "25W"},
        2,
        {0: "MAXN_SUPER", 1: "10W", 2: "15W", 3: "25W", 4: "40W"},
        2,
    ),
    "orin-nx-8gb": (
        "nvidia,p3768-0000+p3767-0001\0nvidia,p3767-0001\0nvidia,tegra234\0",
        "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
        {0: "MAXN", 1: "10W", 2: "15W", 3: "20W"},
        2,
        {0: "MAXN_SUPER", 1: "10W", 2: "15W", 3: "20W", 4: "40W"},
        2,
    ),
    "orin-nano-8gb": (
        "nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0",
        "NVIDIA Jetson Orin Nano Developer Kit",
        {0: "15W", 1: "7W"},
        0,
        {0: "15W", 1: "25W", 2: "MAXN_SUPER", 3: "7W"},  # the Super devkit conf has 4 modes, 7W is id 3
        1,
    ),
    "orin-nano-4gb": (
        "nvidia,p3768-0000+p3767-0004\0nvidia,p3767-0004\0nvidia,tegra234\0",
        "NVIDIA Jetson Orin Nano Developer Kit",
        {0: "10W", 1: "7W_AI", 2: "7W_CPU"},
        0,
        {0: "10W", 1: "25W", 2: "MAXN_SUPER"},
        1,
    ),
}

RELEASE = (
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"
    "# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\nTARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n"
)
CPU_MIN, CPU_MAX = 729600, 1984000
GPU_MIN, GPU_MAX = 306000000, 918000000
GPU_FREQS = (306000000, 408000000, 510000000, 612000000, 714000000, 816000000, 918000000)
CPUS = 4
# (type, millidegrees or None for a zone whose temp refuses a read, as cv* zones do with EAGAIN)
ZONES: list[tuple[str, int | None]] = [
    ("cpu-thermal", 48500),
    ("gpu-thermal", 47250),
    ("cv0-thermal", None),
    ("soc0-thermal", 46000),
    ("tj-thermal", 49125),
    ("soc2-thermal", -256000),  # offline
]
# INA3221 channels: (label, mV, mA); "sum of shunt voltages" has no current channel on the device.
RAILS = [("VDD_IN", 5056, 1496), ("VDD_CPU_GPU_CV", 5048, 384), ("VDD_SOC", 5048, 600)]
# AGX Orin's second INA3221 has unconnected channels labelled "NC" that still read a little noise.
NC_RAILS = [("NC", 24, 8), ("NC", 16, 4), ("NC", 8, 4)]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def watts(name: str) -> int | None:
    digits = "".join(c for c in name.split("W")[0].rsplit("_", 1)[-1] if c.isdigit())
    return int(digits) if "W" in name and digits else None


def mode_gpu_max(name: str) -> int:
    """The GPU max frequency a mode caps at: the hardware maximum for MAXN*, less for fewer watts."""
    w = watts(name)
    if name.startswith("MAXN") or w is None:
        return GPU_MAX
    return max(f for f in GPU_FREQS if f <= min(GPU_MAX, 204000000 + 34000000 * w))


def mode_cpus_online(name: str) -> int:
    w = watts(name)
    return 2 if w is not None and w <= 7 else CPUS


def nvpmodel_conf(
    modes: dict[int, str], default: int, tpc_masks: dict[int, int] | None = None, jetpack: int = 6
) -> str:
    """An nvpmodel.conf in the real layout: PARAM declarations, POWER_MODEL blocks, PM_CONFIG.

    Each mode caps the GPU (``GPU MAX_FREQ``, -1 = the hardware maximum), sets the online CPUs and,
    where ``tpc_masks`` gives one, the ``TPC_POWER_GATING TPC_PG_MASK`` that decides whether nvpmodel
    asks for a reboot (modes with different masks do not switch live).
    """
    gpu = (
        "/sys/devices/platform/17000000.gpu/devfreq_dev"
        if jetpack >= 6
        else "/sys/devices/gpu.0/devfreq/17000000.ga10b"
    )
    out = ["# NVIDIA power model configuration (test sysroot)", "< PARAM TYPE=FILE NAME=CPU_ONLINE >"]
    out += [f"CORE_{n} /sys/devices/system/cpu/cpu{n}/online" for n in range(CPUS)]
    out += [
        "< PARAM TYPE=FILE NAME=TPC_POWER_GATING >",
        "TPC_PG_MASK /sys/devices/platform/gpu.0/tpc_pg_mask",
        "< PARAM TYPE=CLOCK NAME=GPU >",
        f"MAX_FREQ {gpu}/max_freq",
        f"MIN_FREQ {gpu}/min_freq",
        "",
    ]
    for mode_id, name in sorted(modes.items()):
        cap = -1 if name.startswith("MAXN") else mode_gpu_max(name)
        out.append(f"< POWER_MODEL ID={mode_id} NAME={name} >")
        out += [f"CPU_ONLINE CORE_{n} {int(n < mode_cpus_online(name))}" for n in range(CPUS)]
        if tpc_masks and mode_id in tpc_masks:
            out.append(f"TPC_POWER_GATING TPC_PG_MASK {tpc_masks[mode_id]}")
        out += ["GPU MIN_FREQ 0", f"GPU MAX_FREQ {cap}", ""]
    out += ["# mandatory section to configure the default power mode", f"< PM_CONFIG DEFAULT={default} >", ""]
    return "\n".join(out)


@dataclass
class Jetson:
    """A built sysroot, its module's modes, and access to what the stand-ins recorded."""

    root: Path
    module: str
    modes: dict[int, str]
    default: int
    jetpack: int = 6

    def calls(self) -> list[list[str]]:
        log = self.root / "standin-calls.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def changes(self) -> list[list[str]]:
        """Recorded calls that change something (mode sets and jetson_clocks runs other than --show)."""
        return [c for c in self.calls() if (c[0] == "nvpmodel" and "-m" in c) or (c[0] == "jetson_clocks")]

    def mode_id(self) -> int:
        text = (self.root / "var/lib/nvpmodel/status").read_text()
        return int(text.split("pmode:")[1].split()[0])

    def set_temp(self, zone_type: str, millideg: int) -> None:
        for zone in (self.root / "sys/class/thermal").iterdir():
            if (zone / "type").read_text().strip() == zone_type:
                (zone / "temp").write_text(f"{millideg}\n")
                return
        raise KeyError(zone_type)

    @property
    def gpu_node(self) -> Path:
        return self.root / "sys/class/devfreq" / ("17000000.gpu" if self.jetpack >= 6 else "17000000.ga10b")

    def gpu_min(self) -> int:
        return int((self.gpu_node / "min_freq").read_text())

    def gpu_max(self) -> int:
        return int((self.gpu_node / "max_freq").read_text())

    def cpus_online(self) -> int:
        return sum(
            (self.root / f"sys/devices/system/cpu/cpu{n}/online").read_text().strip() == "1" for n in range(CPUS)
        )


def build_sysroot(
    root: Path,
    module: str,
    *,
    super_flash: bool = False,
    mode_id: int | None = None,
    tpc_masks: dict[int, int] | None = None,
    jetpack: int = 6,
) -> Jetson:
    """A sysroot of ``module``; ``jetpack`` 6 lays out the GPU devfreq node as JetPack 6 does
    (``17000000.gpu``, of_node ``gpu``), 5 as JetPack 5 did (``17000000.ga10b``, of_node ``ga10b``)."""
    compatible, model, modes, default, super_modes, super_default = MODULES[module]
    if super_flash:
        assert super_modes, f"{module} has no Super flash"
        modes, default = super_modes, int(super_default or 0)
        first, rest = compatible.split("\0", 1)
        compatible = f"{first}-super\0{rest}"
    current = default if mode_id is None else mode_id
    _write(root / "etc/nv_tegra_release", RELEASE)
    _write(root / "proc/device-tree/compatible", compatible)
    _write(root / "proc/device-tree/model", model + "\0")
    _write(root / "etc/nvpmodel.conf", nvpmodel_conf(modes, default, tpc_masks, jetpack))
    _write(root / "var/lib/nvpmodel/status", f"pmode:{current:04d} fmode:quiet\n")
    for i, (kind, milli) in enumerate(ZONES):
        zone = root / f"sys/class/thermal/thermal_zone{i}"
        _write(zone / "type", kind + "\n")
        if milli is None:
            (zone / "temp").mkdir(parents=True)  # any read fails with an OSError, like EAGAIN on the device
        else:
            _write(zone / "temp", f"{milli}\n")
    _write(root / "sys/devices/platform/gpu.0/load", "372\n")
    jetson = Jetson(root, module, modes, default, jetpack)
    gpu = jetson.gpu_node
    _write(gpu / "device/of_node/name", ("gpu" if jetpack >= 6 else "ga10b") + "\0")
    _write(gpu / "device/load", "372\n")
    _write(gpu / "available_frequencies", " ".join(map(str, GPU_FREQS)) + "\n")
    _write(gpu / "min_freq", f"{GPU_MIN}\n")
    _write(gpu / "max_freq", f"{mode_gpu_max(modes[current])}\n")  # nvpmodel applied the mode at boot
    online = mode_cpus_online(modes[current])
    for n in range(CPUS):
        cpu = root / f"sys/devices/system/cpu/cpu{n}"
        _write(cpu / "online", f"{int(n < online)}\n")
        _write(cpu / "cpufreq/scaling_min_freq", f"{CPU_MIN}\n")
        _write(cpu / "cpufreq/scaling_max_freq", f"{CPU_MAX}\n")
    hwmon = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    for i, (label, mv, ma) in enumerate(RAILS, start=1):
        _write(hwmon / f"in{i}_label", label + "\n")
        _write(hwmon / f"in{i}_input", f"{mv}\n")
        _write(hwmon / f"curr{i}_input", f"{ma}\n")
    _write(hwmon / "in7_label", "sum of shunt voltages\n")
    _write(hwmon / "in7_input", "1360\n")
    if module.startswith("agx"):
        hwmon = root / "sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon2"
        for i, (label, mv, ma) in enumerate(NC_RAILS, start=1):
            _write(hwmon / f"in{i}_label", label + "\n")
            _write(hwmon / f"in{i}_input", f"{mv}\n")
            _write(hwmon / f"curr{i}_input", f"{ma}\n")
    return jetson


@pytest.fixture
def standin_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the nvpmodel and jetson_clocks stand-ins, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("nvpmodel", "jetson_clocks"):
        body = (STANDINS / f"{tool}.py").read_text()
        target = bin_dir / tool
        target.write_text(f"#!{sys.executable}\n{body}")
        target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("STANDIN_NVPMODEL", "STANDIN_NVPMODEL_IDS", "STANDIN_JETSON_CLOCKS"):
        monkeypatch.delenv(var, raising=False)
    return bin_dir


@pytest.fixture
def make_jetson(tmp_path: Path, standin_bin: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Jetson]:
    """``make_jetson(module, super_flash=False, mode_id=None) -> Jetson`` with stand-ins wired to it."""

    def make(
        module: str = "orin-nano-8gb",
        *,
        super_flash: bool = False,
        mode_id: int | None = None,
        tpc_masks: dict[int, int] | None = None,
        jetpack: int = 6,
    ) -> Jetson:
        root = tmp_path / f"sysroot-{module}{'-super' if super_flash else ''}"
        jetson = build_sysroot(
            root, module, super_flash=super_flash, mode_id=mode_id, tpc_masks=tpc_masks, jetpack=jetpack
        )
        monkeypatch.setenv("STANDIN_SYSROOT", str(root))
        return jetson

    return make


@pytest.fixture
def desktop(tmp_path: Path) -> Path:
    """A sysroot of a machine that is not a Jetson (an x86 desktop's files, no tegra anywhere)."""
    root = tmp_path / "desktop"
    _write(root / "etc/os-release", 'NAME="Ubuntu"\nVERSION_ID="24.04"\n')
    _write(root / "sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n")
    _write(root / "sys/class/thermal/thermal_zone0/temp", "41000\n")
    return root
