"""Power limits and locked clocks of desktop and server NVIDIA GPUs, through NVML (``pynvml`` from nvidia-ml-py).

Named modes set each GPU's board power limit to a share of its **default** limit (the rated board
power), clamped to what the card accepts (``nvmlDeviceGetPowerManagementLimitConstraints``):

    max       100 %  the default limit: full speed, the card as it ships
    balanced   75 %  most of the speed for three quarters of the power (the knee of the fps/W curve)
    eco        50 %  half the rated board power (a 300 W card at 150 W)

or an explicit wattage (``180W``), which must lie within the card's constraints. NVML takes and gives
power in **milliwatts**. Before the first change the previous limit (and whether clocks were
locked) is written to a state file, keyed by GPU UUID, so :meth:`NvmlPower.restore` puts it back, from
this process or from another one (``edge power restore`` after a crash). Changing a limit or clocks
needs root: NVML answers ``NVMLError_NoPermission``, reported as one line (exit code 7).

:class:`DesktopController` gives the same interface as the Jetson controllers, so the run config's
``power:`` section and its idle and thermal policies work on desktops too.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import PowerError, first_line
from edge.power.device import Mode, ModeList

log = logging.getLogger(__name__)

MODES: tuple[tuple[str, float], ...] = (("max", 1.0), ("balanced", 0.75), ("eco", 0.5))
STATE_NAME = "nvml-power.json"
_WATTS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*W\s*$", re.IGNORECASE)
SUDO = "run it with sudo (NVML changes power limits and clocks only as root)"


def load_nvml() -> Any:
    """The ``pynvml`` module (nvidia-ml-py); tests replace this function with an NVML stand-in."""
    try:
        import pynvml
    except ImportError as exc:
        raise PowerError("NVML needs nvidia-ml-py (`pip install nvidia-ml-py`, in the rtx extra)") from exc
    return pynvml


def state_dir() -> Path:
    """Where what to restore is kept: ``$EDGE_STATE_DIR``, else ``/var/lib/edge`` (changes need root anyway)."""
    return Path(os.environ.get("EDGE_STATE_DIR") or "/var/lib/edge")


def parse_watts(text: str) -> float | None:
    """``"180W"`` -> 180.0; None when ``text`` is not a wattage."""
    m = _WATTS.match(text)
    return float(m.group(1)) if m else None


def mode_names() -> str:
    return ", ".join(name for name, _ in MODES) + " or a wattage such as 180W"


@dataclass(frozen=True)
class GpuPower:
    """One GPU's power facts in watts (None where NVML does not report them)."""

    index: int
    name: str
    uuid: str
    limit_w: float | None  # the limit set now
    default_w: float | None  # the card's default (rated) limit
    min_w: float | None  # constraints: what the card accepts
    max_w: float | None
    enforced_w: float | None  # what the card enforces (the lowest of every limiter)
    power_w: float | None  # drawn now
    clocks_locked: bool | None  # locked by edge (from the state file); None: not known

    def target_w(self, mode: str) -> float:
        """The limit ``mode`` asks for on this GPU: a share of the default, clamped to the constraints."""
        watts = parse_watts(mode)
        lo, hi = self.min_w, self.max_w
        if watts is not None:
            if lo is not None and hi is not None and not lo <= watts <= hi:
                raise PowerError(
                    f"{watts:g}W is outside what GPU {self.index} ({self.name}) accepts: {lo:g}-{hi:g}W "
                    "(nvmlDeviceGetPowerManagementLimitConstraints)"
                )
            return watts
        share = dict(MODES).get(mode.lower())
        if share is None:
            raise PowerError(f"unknown power mode {mode!r}: desktop GPUs take {mode_names()}")
        if self.default_w is None:
            raise PowerError(f"GPU {self.index} ({self.name}) reports no default power limit through NVML")
        target = self.default_w * share
        if lo is not None:
            target = max(target, lo)
        if hi is not None:
            target = min(target, hi)
        return target

    def mode_name(self) -> str:
        """The named mode the current limit equals (within 1 W), else the limit as ``NNNW``."""
        if self.limit_w is None:
            return "unknown"
        for name, _ in MODES:
            try:
                if abs(self.target_w(name) - self.limit_w) < 1.0:
                    return name
            except PowerError:
                continue
        return f"{self.limit_w:g}W"

    def as_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["mode"] = self.mode_name()
        data["modes"] = {name: _try_target(self, name) for name, _ in MODES}
        return data


def _try_target(gpu: GpuPower, mode: str) -> float | None:
    try:
        return round(gpu.target_w(mode), 1)
    except PowerError:
        return None


class NvmlPower:
    """The GPUs NVML sees (all, or those picked by index or UUID), their limits, clocks and state file."""

    def __init__(
        self, gpus: Sequence[str] | None = None, *, state_file: str | Path | None = None, nvml: Any = None
    ) -> None:
        self.nv: Any = nvml if nvml is not None else load_nvml()
        try:
            self.nv.nvmlInit()
        except self.nv.NVMLError as exc:
            raise PowerError(f"NVML is not available ({exc}): no NVIDIA driver on this machine") from exc
        self.state_file = Path(state_file) if state_file else state_dir() / STATE_NAME
        try:
            count = self.nv.nvmlDeviceGetCount()
            self._handles = self._pick(count, gpus)
        except BaseException:
            self.close()
            raise

    def _pick(self, count: int, gpus: Sequence[str] | None) -> list[tuple[int, Any]]:
        if count == 0:
            raise PowerError("NVML lists no GPU on this machine")
        everything = [(i, self.nv.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
        if not gpus:
            return everything
        picked: list[tuple[int, Any]] = []
        for wanted in gpus:
            wanted = wanted.strip()
            found: tuple[int, Any] | None
            if wanted.isdigit() and int(wanted) < count:
                found = everything[int(wanted)]
            else:
                found = next((g for g in everything if _text(self.nv.nvmlDeviceGetUUID(g[1])) == wanted), None)
            if found is None:
                uuids = ", ".join(f"{i}={_text(self.nv.nvmlDeviceGetUUID(h))}" for i, h in everything)
                raise PowerError(f"--gpu {wanted}: no such GPU; this machine has {uuids}")
            if found not in picked:
                picked.append(found)
        return picked

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError:
            pass

    def __enter__(self) -> NvmlPower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------
    def _get(self, fn: str, *args: Any) -> Any:
        try:
            return getattr(self.nv, fn)(*args)
        except (self.nv.NVMLError, AttributeError):
            return None

    def _limit_mw(self, handle: Any) -> int | None:
        limit = self._get("nvmlDeviceGetPowerManagementLimit", handle)
        return limit if limit is not None else self._get("nvmlDeviceGetEnforcedPowerLimit", handle)

    def gpus(self) -> list[GpuPower]:
        state = self._state()
        out = []
        for index, h in self._handles:
            uuid = _text(self.nv.nvmlDeviceGetUUID(h))
            cons = self._get("nvmlDeviceGetPowerManagementLimitConstraints", h)
            saved = state.get(uuid, {})
            out.append(
                GpuPower(
                    index=index,
                    name=_text(self._get("nvmlDeviceGetName", h) or "?"),
                    uuid=uuid,
                    limit_w=_w(self._limit_mw(h)),
                    default_w=_w(self._get("nvmlDeviceGetPowerManagementDefaultLimit", h)),
                    min_w=_w(cons[0]) if cons else None,
                    max_w=_w(cons[1]) if cons else None,
                    enforced_w=_w(self._get("nvmlDeviceGetEnforcedPowerLimit", h)),
                    power_w=_w(self._get("nvmlDeviceGetPowerUsage", h)),
                    clocks_locked=bool(saved.get("clocks_locked")) if uuid in state else None,
                )
            )
        return out

    def energy_mj(self) -> int | None:
        """Total energy of the picked GPUs since the driver loaded, in millijoules (Volta and newer)."""
        values = [self._get("nvmlDeviceGetTotalEnergyConsumption", h) for _, h in self._handles]
        return None if any(v is None for v in values) else sum(values)

    def power_w(self) -> float | None:
        values = [self._get("nvmlDeviceGetPowerUsage", h) for _, h in self._handles]
        return None if any(v is None for v in values) else sum(values) / 1000.0

    # -- the state file ------------------------------------------------------------------------
    def _state(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise PowerError(f"cannot read {self.state_file} ({exc}); remove it to start afresh") from exc
        gpus = data.get("gpus") if isinstance(data, dict) else None
        return gpus if isinstance(gpus, dict) else {}

    def _save(self, state: dict[str, dict[str, Any]]) -> None:
        from edge.fsutil import atomic_write

        try:
            if not state:
                self.state_file.unlink(missing_ok=True)
                return
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.state_file, json.dumps({"gpus": state}, indent=2, sort_keys=True) + "\n")
        except PermissionError as exc:
            raise PowerError(f"cannot write {self.state_file}: permission denied; {SUDO}") from exc
        except OSError as exc:
            raise PowerError(f"cannot write {self.state_file}: {exc.strerror or exc}") from exc

    def _remember(self, gpu: GpuPower, **extra: Any) -> None:
        """Store ``gpu``'s limit before edge's first change (later changes keep the first record)."""
        state = self._state()
        entry = state.setdefault(gpu.uuid, {"index": gpu.index, "name": gpu.name})
        if "limit_mw" not in entry and gpu.limit_w is not None:
            entry["limit_mw"] = round(gpu.limit_w * 1000)
        entry.update(extra)
        self._save(state)

    # -- changing ------------------------------------------------------------------------------
    def _fail(self, exc: Exception, what: str, gpu: GpuPower) -> PowerError:
        nv = self.nv
        where = f"{what} of GPU {gpu.index} ({gpu.name})"
        if isinstance(exc, nv.NVMLError_NoPermission):
            return PowerError(f"{where} needs root (NVML: {exc}); {SUDO}")
        if isinstance(exc, nv.NVMLError_NotSupported):
            return PowerError(
                f"{where}: this GPU does not support it through NVML (NVML: {exc}); laptop GPUs and some "
                "boards fix their power limit and clocks in firmware"
            )
        return PowerError(f"{where} failed (NVML: {first_line(exc, type(exc).__name__)})")

    def set_limit(self, mode: str) -> list[tuple[GpuPower, float]]:
        """Set every picked GPU's limit for ``mode``; returns (GPU before, new limit W). Verified by reading back."""
        gpus = self.gpus()
        plan = [(g, g.target_w(mode)) for g in gpus]  # every GPU's target first: a bad wattage changes nothing
        done: list[tuple[GpuPower, float]] = []
        for (index, handle), (gpu, watts) in zip(self._handles, plan):
            self._remember(gpu)
            try:
                self.nv.nvmlDeviceSetPowerManagementLimit(handle, round(watts * 1000))
            except self.nv.NVMLError as exc:
                self._forget_unchanged(gpu)
                self._undo(done)
                raise self._fail(exc, "setting the power limit", gpu) from exc
            now = _w(self._limit_mw(handle))
            if now is None or abs(now - watts) >= 1.0:
                self._undo([*done, (gpu, watts)])
                raise PowerError(
                    f"setting the power limit of GPU {index} ({gpu.name}) to {watts:g}W: NVML accepted it but the "
                    f"limit reads {now}W; put back"
                )
            log.info("GPU %d power limit %sW -> %gW (%s)", index, gpu.limit_w, watts, mode)
            done.append((gpu, watts))
        return done

    def _forget_unchanged(self, gpu: GpuPower) -> None:
        state = self._state()
        entry = state.get(gpu.uuid)
        if entry and not entry.get("clocks_locked") and entry.get("limit_mw") == round((gpu.limit_w or 0) * 1000):
            state.pop(gpu.uuid)
            self._save(state)

    def _undo(self, done: list[tuple[GpuPower, float]]) -> None:
        for gpu, _ in done:
            if gpu.limit_w is None:
                continue
            handle = self.nv.nvmlDeviceGetHandleByUUID(gpu.uuid)
            try:
                self.nv.nvmlDeviceSetPowerManagementLimit(handle, round(gpu.limit_w * 1000))
            except self.nv.NVMLError as exc:
                log.error("could not put GPU %d's power limit back to %gW: %s", gpu.index, gpu.limit_w, exc)

    def lock_clocks(self, lo_mhz: int | None, hi_mhz: int | None) -> list[tuple[GpuPower, int, int]]:
        """Lock the graphics clock of every picked GPU to ``lo..hi`` MHz (None: the GPU's maximum)."""
        out = []
        for (_, handle), gpu in zip(self._handles, self.gpus()):
            top = self._get("nvmlDeviceGetMaxClockInfo", handle, self.nv.NVML_CLOCK_GRAPHICS)
            hi = hi_mhz if hi_mhz is not None else top
            lo = lo_mhz if lo_mhz is not None else hi
            if hi is None or lo is None:
                raise PowerError(f"GPU {gpu.index} ({gpu.name}) reports no maximum graphics clock through NVML")
            if lo > hi:
                raise PowerError(f"clocks lock {lo},{hi}: the minimum is above the maximum")
            if top is not None and hi > top:
                raise PowerError(f"clocks lock {lo},{hi}: GPU {gpu.index} ({gpu.name}) runs at most {top} MHz")
            self._remember(gpu, clocks_locked=True)
            try:
                self.nv.nvmlDeviceSetGpuLockedClocks(handle, lo, hi)
            except self.nv.NVMLError as exc:
                state = self._state()
                state.get(gpu.uuid, {}).pop("clocks_locked", None)
                self._save(state)
                self._forget_unchanged(gpu)
                raise self._fail(exc, "locking the clocks", gpu) from exc
            out.append((gpu, lo, hi))
        return out

    def reset_clocks(self) -> None:
        """Let the picked GPUs' graphics clocks float again (``nvmlDeviceResetGpuLockedClocks``)."""
        for (_, handle), gpu in zip(self._handles, self.gpus()):
            try:
                self.nv.nvmlDeviceResetGpuLockedClocks(handle)
            except self.nv.NVMLError as exc:
                raise self._fail(exc, "resetting the clocks", gpu) from exc
            state = self._state()
            entry = state.get(gpu.uuid)
            if entry is not None:
                entry.pop("clocks_locked", None)
                if "limit_mw" not in entry or entry["limit_mw"] == round((gpu.limit_w or 0) * 1000):
                    state.pop(gpu.uuid)
                self._save(state)

    def restore(self) -> list[tuple[GpuPower, float | None, bool]]:
        """Put back what the state file recorded for the picked GPUs: (GPU now, limit W restored, clocks reset)."""
        state = self._state()
        out = []
        for (_, handle), gpu in zip(self._handles, self.gpus()):
            entry = state.get(gpu.uuid)
            if entry is None:
                continue
            limit_mw = entry.get("limit_mw")
            try:
                if entry.get("clocks_locked"):
                    self.nv.nvmlDeviceResetGpuLockedClocks(handle)
                if isinstance(limit_mw, int):
                    self.nv.nvmlDeviceSetPowerManagementLimit(handle, limit_mw)
            except self.nv.NVMLError as exc:
                raise self._fail(exc, "restoring the power limit and clocks", gpu) from exc
            state.pop(gpu.uuid)
            self._save(state)
            out.append((gpu, _w(limit_mw), bool(entry.get("clocks_locked"))))
        return out

    def set_limits_w(self, limits: dict[str, float | None]) -> None:
        """Set limits by UUID (what a policy read at its start), and drop state entries that now match."""
        state = self._state()
        for (_, handle), gpu in zip(self._handles, self.gpus()):
            watts = limits.get(gpu.uuid)
            if watts is None:
                continue
            try:
                self.nv.nvmlDeviceSetPowerManagementLimit(handle, round(watts * 1000))
            except self.nv.NVMLError as exc:
                raise self._fail(exc, "restoring the power limit", gpu) from exc
            entry = state.get(gpu.uuid)
            if entry is not None and entry.get("limit_mw") == round(watts * 1000) and not entry.get("clocks_locked"):
                state.pop(gpu.uuid)
        self._save(state)


class DesktopModeList(ModeList):
    """The named desktop modes, with any wattage (``180W``) accepted by :meth:`resolve`."""

    def resolve(self, name: str) -> Mode:
        watts = parse_watts(name)
        if watts is not None:
            return Mode(1000 + round(watts), f"{watts:g}W", watts=watts)
        for mode in self.modes:
            if mode.name.lower() == name.strip().lower():
                return mode
        raise PowerError(f"unknown power mode {name!r}: desktop GPUs take {mode_names()}")


class DesktopController:
    """:class:`~edge.power.control.PowerController` for NVML GPUs: modes are power limits, clocks are locked clocks.

    ``clocks: on`` locks the graphics clock at the GPU's maximum; off releases it. The limits read when
    the controller opens are what :meth:`restore_mode` puts back at the end of a run.
    """

    backend = "nvml"

    def __init__(self, power: NvmlPower) -> None:
        self.power = power
        self._start = {g.uuid: g.limit_w for g in power.gpus()}

    def modes(self) -> ModeList:
        gpus = self.power.gpus()
        modes = tuple(
            Mode(i, name, watts=sum(_try_target(g, name) or 0.0 for g in gpus)) for i, (name, _) in enumerate(MODES)
        )
        return DesktopModeList(modes, 0, "NVML power limits")

    def current_mode(self) -> Mode:
        gpus = self.power.gpus()
        names = {g.mode_name() for g in gpus}
        total = sum(g.limit_w or 0.0 for g in gpus)
        if len(names) == 1:
            name = names.pop()
            for mode in self.modes().modes:
                if mode.name == name:
                    return mode
            return Mode(1000 + round(total), name, watts=total)
        return Mode(999, "mixed", watts=total)

    def set_mode(self, name: str) -> Mode:
        mode = self.modes().resolve(name)
        self.power.set_limit(mode.name)
        return mode

    def restore_mode(self, mode: Mode) -> None:
        self.power.set_limits_w(self._start)

    def clocks_pinned(self) -> bool | None:
        states = {g.clocks_locked for g in self.power.gpus()}
        return bool(states.pop()) if len(states) == 1 else None

    def set_clocks(self, on: bool) -> None:
        if on:
            self.power.lock_clocks(None, None)
        else:
            self.power.reset_clocks()

    def restore_clocks(self) -> None:
        self.power.reset_clocks()


def _w(milliwatts: Any) -> float | None:
    return None if milliwatts is None else int(milliwatts) / 1000.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
