"""The ``power:`` section of a run config.

    power:
      mode: MAXN              # applied at start, previous mode restored at exit
      clocks: on              # jetson_clocks pinned (on), released (off), or left alone (absent)
      idle_mode: 15W          # after idle_after with no detections, switch here (a mode that switches live)...
      idle_after: 30s
      fps_idle: 2             # ...and cap the frame rate; the first detection switches back
      thermal_limit_c: 85     # step down to thermal_mode when a zone exceeds this
      thermal_hysteresis_c: 5 # and back when every zone is this far below the limit
      thermal_mode: 15W       # default: the next lower-power mode in the device's list

Modes are names; they are resolved to ids from the device's own list when the policy starts (a name
the device does not know fails there, with the valid names, and so does an idle or thermal mode that
nvpmodel cannot switch to without a reboot). On desktop GPUs (NVML) the modes are ``max``, ``balanced``,
``eco`` or a wattage such as ``180W``, and ``clocks: on`` locks the graphics clock at its maximum.
Only the shape is checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.configkit import Reader
from edge.errors import ConfigError


@dataclass(frozen=True)
class PowerConfig:
    mode: str | None = None
    clocks: str | None = None  # "on" | "off" | None (leave alone)
    idle_mode: str | None = None
    idle_after: float | None = None  # seconds
    fps_idle: float | None = None
    thermal_limit_c: float | None = None
    thermal_hysteresis_c: float = 5.0
    thermal_mode: str | None = None  # None: next lower-power mode from the device list

    @property
    def enabled(self) -> bool:
        """True when the section asks for anything at all."""
        return any(
            v is not None
            for v in (self.mode, self.clocks, self.idle_mode, self.idle_after, self.fps_idle, self.thermal_limit_c)
        )

    @property
    def idle_enabled(self) -> bool:
        return self.idle_after is not None

    @classmethod
    def from_dict(cls, data: Any, path: str = "power") -> PowerConfig:
        r = Reader(data, path)
        mode = _mode_name(r, "mode")
        clocks = _clocks(r)
        idle_mode = _mode_name(r, "idle_mode")
        idle_after = r.duration("idle_after", default=None)
        fps_idle = r.float("fps_idle", default=None, min=0)
        if fps_idle is not None and fps_idle <= 0:
            raise ConfigError(f"{r.where('fps_idle')}: must be > 0 frames per second, got {fps_idle}")
        limit = r.float("thermal_limit_c", default=None, min=0, max=150)
        hysteresis = r.float("thermal_hysteresis_c", default=5.0, min=0, max=50)
        thermal_mode = _mode_name(r, "thermal_mode")
        r.finish()
        if (idle_mode is not None or fps_idle is not None) and idle_after is None:
            raise ConfigError(
                f"{r.where('idle_after')}: required when idle_mode or fps_idle is set (e.g. idle_after: 30s)"
            )
        if idle_after is not None and idle_mode is None and fps_idle is None:
            raise ConfigError(f"{r.where('idle_after')}: set idle_mode and/or fps_idle to say what idle does")
        if idle_after is not None and idle_after <= 0:
            raise ConfigError(f"{r.where('idle_after')}: must be more than 0 seconds, got {idle_after}")
        if thermal_mode is not None and limit is None:
            raise ConfigError(f"{r.where('thermal_mode')}: needs thermal_limit_c to say when to step down")
        return cls(
            mode=mode,
            clocks=clocks,
            idle_mode=idle_mode,
            idle_after=idle_after,
            fps_idle=fps_idle,
            thermal_limit_c=limit,
            thermal_hysteresis_c=hysteresis,
            thermal_mode=thermal_mode,
        )


def _mode_name(r: Reader, key: str) -> str | None:
    value = r.raw(key, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(f"{r.where(key)}: expected a power mode name such as MAXN or 15W, got {value!r}")
    text = str(value).strip()
    if not text:
        raise ConfigError(f"{r.where(key)}: empty power mode name")
    return text


def _clocks(r: Reader) -> str | None:
    value = r.raw("clocks", None)
    if value is None:
        return None
    # YAML 1.1 reads bare on/off as booleans: accept both spellings.
    if value is True:
        return "on"
    if value is False:
        return "off"
    if isinstance(value, str) and value.lower() in ("on", "off"):
        return value.lower()
    raise ConfigError(f"{r.where('clocks')}: expected on or off, got {value!r}")
