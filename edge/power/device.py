"""What a Jetson says about its power modes, read from files under a sysroot.

Every path is joined to an injectable ``sysroot`` (``/`` on a device, a folder of real-format files in
tests), so the same code reads a device and a fixture. Nothing here runs a command or needs root.

- ``/etc/nv_tegra_release`` and ``/proc/device-tree/compatible``: is this a Jetson at all.
- ``/etc/nvpmodel.conf``: ``< POWER_MODEL ID=n NAME=... >`` blocks and ``< PM_CONFIG DEFAULT=n >``.
- ``nvpmodel -p --verbose`` output: ``NVPM VERB: POWER_MODEL: ID=n NAME=...`` lines.
- ``nvpmodel -q`` output: ``NV Power Mode: <NAME>`` then the id on the next line.
- ``/var/lib/nvpmodel/status``: ``pmode:0002`` (the id of the current mode).
- ``jetson_clocks --show`` output: ``cpuN: Online=1 ... MinFreq=.. MaxFreq=..`` and ``GPU MinFreq=.. MaxFreq=..``.

Modes that switch live and modes that need a reboot: nvpmodel asks for a reboot when the target mode
power-gates a different set of GPU TPCs (the ``TPC_POWER_GATING TPC_PG_MASK`` line of each
``POWER_MODEL`` block differs), as jetson-stats' jtop also reads it; :meth:`ModeList.needs_reboot`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from edge.errors import NotJetsonError, PowerError, first_line

CONF_PATH = "etc/nvpmodel.conf"
STATUS_PATH = "var/lib/nvpmodel/status"
TEGRA_RELEASE = "etc/nv_tegra_release"
DT_COMPATIBLE = "proc/device-tree/compatible"
DT_MODEL = "proc/device-tree/model"

_CONF_MODEL = re.compile(r"^<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+)\s*>", re.MULTILINE)
_CONF_DEFAULT = re.compile(r"^<\s*PM_CONFIG\s+DEFAULT=(\d+)\s*>", re.MULTILINE)
_VERB_MODEL = re.compile(r"POWER_MODEL:\s*ID=(\d+)\s+NAME=(\S+)")
_VERB_DEFAULT = re.compile(r"PM_CONFIG:\s*DEFAULT=\S*?\((\d+)\)|PM_CONFIG:\s*DEFAULT=(\d+)")
_CONF_BLOCK = re.compile(r"^<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+)\s*>(.*?)(?=^<)", re.MULTILINE | re.DOTALL)
_TPC_MASK = re.compile(r"^\s*TPC_POWER_GATING\s+TPC_PG_MASK\s+(\S+)", re.MULTILINE)
_SHOW_CPU = re.compile(r"^cpu(\d+):\s+Online=(\d)\b.*?MinFreq=(\d+)\s+MaxFreq=(\d+)", re.MULTILINE)
_SHOW_GPU = re.compile(r"^GPU MinFreq=(\d+)\s+MaxFreq=(\d+)", re.MULTILINE)
_QUERY = re.compile(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)")
_STATUS = re.compile(r"pmode:(\d+)")
_WATTS = re.compile(r"(\d+(?:\.\d+)?)W", re.IGNORECASE)


def path_in(sysroot: str | Path, path: str) -> Path:
    """``path`` (relative, without the leading slash) under ``sysroot``."""
    return Path(sysroot) / path.lstrip("/")


def read_text(path: Path) -> str | None:
    """The file's text, or None when it is missing or unreadable (sysfs files may refuse a read)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


@dataclass(frozen=True)
class Mode:
    """One nvpmodel mode: the device's numeric ``id`` and its ``name``."""

    id: int
    name: str
    watts: float | None = field(default=None, compare=False)  # a desktop mode's total power limit

    def __str__(self) -> str:
        return f"{self.name} (id {self.id})"


@dataclass(frozen=True)
class ModeList:
    """The modes a device offers, in id order, with its boot default when known."""

    modes: tuple[Mode, ...]
    default_id: int | None = None
    source: str = ""
    tpc_masks: tuple[tuple[int, str], ...] = ()  # (mode id, TPC_PG_MASK) from nvpmodel.conf, where known

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modes]

    def by_id(self, mode_id: int) -> Mode | None:
        return next((m for m in self.modes if m.id == mode_id), None)

    def resolve(self, name: str) -> Mode:
        """The mode called ``name`` (case-insensitive; a numeric id is accepted too).

        Raises :class:`PowerError` listing the valid names when the device has no such mode.
        """
        wanted = name.strip()
        for mode in self.modes:
            if mode.name.lower() == wanted.lower():
                return mode
        if wanted.isdigit():
            found = self.by_id(int(wanted))
            if found is not None:
                return found
        valid = ", ".join(self.names) or "none"
        raise PowerError(f"unknown power mode {name!r}: this device's modes are {valid} ({self.source})")

    def needs_reboot(self, current: Mode, target: Mode) -> bool:
        """True when nvpmodel asks for a reboot to go from ``current`` to ``target`` (TPC masks differ)."""
        masks = dict(self.tpc_masks)
        a, b = masks.get(current.id), masks.get(target.id)
        return a is not None and b is not None and a != b

    def live_from(self, current: Mode) -> list[Mode]:
        """The modes reachable from ``current`` without a reboot (``current`` included)."""
        return [m for m in self.modes if not self.needs_reboot(current, m)]

    def with_masks(self, conf: ModeList | None) -> ModeList:
        """This list with the TPC masks of ``conf`` (the nvpmodel.conf of the same device)."""
        if conf is None or not conf.tpc_masks:
            return self
        return ModeList(self.modes, self.default_id, self.source, conf.tpc_masks)

    def lower_than(self, mode: Mode) -> Mode | None:
        """The next lower-power mode below ``mode`` (the closest one by :func:`power_rank`), or None."""
        rank = power_rank(mode)
        below = [m for m in self.modes if power_rank(m) < rank]
        if not below:
            return None
        return max(below, key=lambda m: (power_rank(m), -m.id))


def power_rank(mode: Mode) -> float:
    """A sort key for how much power a mode allows: a desktop mode's watts, else watts in the name, MAXN* above any number.

    Names without a wattage (custom modes) rank at 0, below every named budget, so the policy never
    steps *up* into one by mistake.
    """
    if mode.watts is not None:
        return mode.watts
    name = mode.name.upper()
    if name.startswith("MAXN"):
        return math.inf
    m = _WATTS.search(name)
    return float(m.group(1)) if m else 0.0


def parse_nvpmodel_conf(text: str, source: str = CONF_PATH) -> ModeList:
    """Modes and default from an ``nvpmodel.conf``."""
    modes = tuple(sorted((Mode(int(i), n) for i, n in _CONF_MODEL.findall(text)), key=lambda m: m.id))
    m = _CONF_DEFAULT.search(text)
    masks: list[tuple[int, str]] = []
    for mode_id, _name, body in _CONF_BLOCK.findall(text + "\n<"):
        mask = _TPC_MASK.search(body)
        if mask:
            masks.append((int(mode_id), mask.group(1)))
    return ModeList(modes, int(m.group(1)) if m else None, source, tuple(masks))


def parse_nvpmodel_verbose(text: str) -> ModeList:
    """Modes and default from ``nvpmodel -p --verbose`` output (stdout and stderr together)."""
    seen: dict[int, Mode] = {}
    for mode_id, name in _VERB_MODEL.findall(text):
        seen.setdefault(int(mode_id), Mode(int(mode_id), name))
    default: int | None = None
    m = _VERB_DEFAULT.search(text)
    if m:
        default = int(m.group(1) or m.group(2))
    return ModeList(tuple(sorted(seen.values(), key=lambda x: x.id)), default, "nvpmodel -p --verbose")


def parse_nvpmodel_query(text: str) -> Mode | None:
    """The current mode from ``nvpmodel -q`` output (warnings before it are ignored)."""
    m = _QUERY.search(text)
    return Mode(int(m.group(2)), m.group(1)) if m else None


def parse_jetson_clocks_show(text: str) -> bool | None:
    """Whether ``jetson_clocks --show`` output shows pinned clocks (every online CPU's and the GPU's min = max)."""
    pairs = [(int(lo), int(hi)) for _, online, lo, hi in _SHOW_CPU.findall(text) if online == "1"]
    pairs += [(int(lo), int(hi)) for lo, hi in _SHOW_GPU.findall(text)]
    if not pairs:
        return None
    return all(lo == hi for lo, hi in pairs)


def read_status_id(sysroot: str | Path) -> int | None:
    """The current mode id from ``/var/lib/nvpmodel/status`` (``pmode:0002``), or None."""
    text = read_text(path_in(sysroot, STATUS_PATH))
    m = _STATUS.search(text or "")
    return int(m.group(1)) if m else None


def read_conf(sysroot: str | Path) -> ModeList | None:
    path = path_in(sysroot, CONF_PATH)
    text = read_text(path)
    return None if text is None else parse_nvpmodel_conf(text, "/" + CONF_PATH)


@dataclass(frozen=True)
class JetsonInfo:
    """Why this machine counts as a Jetson: release line, device-tree ids and model string."""

    release: str | None
    compatible: tuple[str, ...]
    model: str | None

    @property
    def super_flash(self) -> bool:
        return any(c.endswith("-super") for c in self.compatible)


def jetson_info(sysroot: str | Path = "/") -> JetsonInfo | None:
    """The machine's Jetson identity, or None when neither nv_tegra_release nor a tegra device tree is there."""
    release = read_text(path_in(sysroot, TEGRA_RELEASE))
    compat_text = read_text(path_in(sysroot, DT_COMPATIBLE)) or ""
    compatible = tuple(c for c in re.split(r"[\x00\s]+", compat_text) if c)
    is_tegra = any("tegra" in c for c in compatible)
    if release is None and not is_tegra:
        return None
    model = read_text(path_in(sysroot, DT_MODEL))
    first = first_line(release or "") or None
    return JetsonInfo(first, compatible, model.strip("\x00\n ") if model else None)


def require_jetson(sysroot: str | Path = "/") -> JetsonInfo:
    """:func:`jetson_info`, or :class:`NotJetsonError` naming what was looked for."""
    info = jetson_info(sysroot)
    if info is None:
        raise not_jetson(sysroot)
    return info


def not_jetson(sysroot: str | Path = "/", nvml: object = None) -> NotJetsonError:
    """Exit code 8: not a Jetson, and (with ``nvml``, why NVML failed) no desktop GPU to control either."""
    where = "" if str(sysroot) in ("/", "") else f" under {sysroot}"
    why = f"no /{TEGRA_RELEASE} and no tegra entry in /{DT_COMPATIBLE}{where}"
    if nvml is None:
        return NotJetsonError(f"not a Jetson: {why}; nvpmodel modes and jetson_clocks are Jetson-only")
    return NotJetsonError(f"no power control on this machine: not a Jetson ({why}) and no GPU through NVML ({nvml})")


GPU_LOAD_PATHS = ("sys/devices/platform/gpu.0/load", "sys/devices/gpu.0/load")
# devfreq of_node names of the integrated GPU: "gpu" on JetPack 6 (17000000.gpu), "ga10b" on JetPack 5 Orin.
GPU_OF_NAMES = ("gpu", "ga10b", "gv11b", "gp10b", "gb10b")
DEVFREQ_DIR = "sys/class/devfreq"
CPU_DIR = "sys/devices/system/cpu"


def gpu_devfreq(sysroot: str | Path = "/") -> Path | None:
    """The devfreq folder of the integrated GPU: the entry whose ``device/of_node/name`` is ``ga10b`` (Orin) or kin."""
    base = path_in(sysroot, DEVFREQ_DIR)
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return None
    for entry in entries:
        name = (read_text(entry / "device" / "of_node" / "name") or "").strip("\x00\n ")
        if name in GPU_OF_NAMES:
            return entry
    return None


def _read_int(path: Path) -> int | None:
    text = read_text(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def clocks_pinned(sysroot: str | Path = "/") -> bool | None:
    """True when ``jetson_clocks`` has pinned the clocks (every online CPU's and the GPU's min = max).

    Read from sysfs, so it needs no root. None when neither CPU nor GPU frequency files are readable.
    """
    pairs: list[tuple[int, int]] = []
    cpu_base = path_in(sysroot, CPU_DIR)
    try:
        cpus = sorted(p for p in cpu_base.glob("cpu[0-9]*") if p.is_dir())
    except OSError:
        cpus = []
    for cpu in cpus:
        if (read_text(cpu / "online") or "1").strip() != "1":
            continue
        lo, hi = _read_int(cpu / "cpufreq" / "scaling_min_freq"), _read_int(cpu / "cpufreq" / "scaling_max_freq")
        if lo is not None and hi is not None:
            pairs.append((lo, hi))
    gpu = gpu_devfreq(sysroot)
    if gpu is not None:
        lo, hi = _read_int(gpu / "min_freq"), _read_int(gpu / "max_freq")
        if lo is not None and hi is not None:
            pairs.append((lo, hi))
    if not pairs:
        return None
    return all(lo == hi for lo, hi in pairs)
