"""The ``power:`` policy of ``edge run``: a pipeline observer that owns the device's mode while it runs.

- start: apply ``mode`` and ``clocks``, remembering what was there before;
- idle: after ``idle_after`` without detections, switch to ``idle_mode`` and cap the frame rate at
  ``fps_idle``; the first detection switches back;
- thermal: when any zone passes ``thermal_limit_c``, step down to ``thermal_mode`` (default: the next
  lower-power mode in the device's list); back when every zone is ``thermal_hysteresis_c`` below;
- stop (also on SIGTERM, which ``edge run`` turns into a normal stop): restore mode, clocks and fps.

Of the modes asked for at a time (base, idle, thermal) the lowest-power one wins. Every transition
is an event (kind ``power`` or ``thermal``) with its reason, sent to ``events`` and logged.

Decisions run on the telemetry thread (``threaded=True``, the default): ``on_frame`` only records
detections and wakes that thread, so the pipeline never waits on ``nvpmodel``. Tests pass
``threaded=False`` and an injected ``clock`` and drive :meth:`evaluate` directly.

Metrics: :meth:`PowerPolicy.status` (a JSON-ready dict) and ``PowerPolicy.telemetry.latest()``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.errors import NotJetsonError, PowerError
from edge.observer import FrameResult, PipelineControl, PipelineStats
from edge.power import device
from edge.power.config import PowerConfig
from edge.power.control import PowerController, open_power_controller
from edge.power.device import Mode, ModeList, power_rank
from edge.power.telemetry import TelemetrySample, TelemetrySampler, open_telemetry

log = logging.getLogger(__name__)

EventSink = Callable[[str, str, dict[str, Any]], None]


class PowerPolicy:
    def __init__(
        self,
        config: PowerConfig,
        controller: PowerController | None = None,
        clock: Callable[[], float] = time.monotonic,
        telemetry: Callable[[], TelemetrySample] | None = None,
        *,
        events: EventSink | None = None,
        sysroot: str | Path = "/",
        interval: float = 2.0,
        threaded: bool = True,
        gpus: list[str] | None = None,
    ) -> None:
        self.config = config
        self.gpus = gpus  # desktop GPUs (index or UUID) whose limits the policy sets; None: all
        self.controller = controller
        self.clock = clock
        self.events = events
        self.sysroot = sysroot
        self.threaded = threaded
        self._read = telemetry
        self.telemetry = TelemetrySampler(self._read_sample, interval, on_sample=self._on_sample)
        self._lock = threading.RLock()
        self._control: PipelineControl | None = None
        self._started = False
        self._previous_mode: Mode | None = None
        self._previous_clocks: bool | None = None
        self._clocks_changed = False
        self._base: Mode | None = None
        self._idle_mode: Mode | None = None
        self._thermal_mode: Mode | None = None
        self._applied: Mode | None = None
        self._fps_cap: float | None = None
        self._idle = False
        self._hot = False
        self._last_detection = 0.0

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def needs_device(self) -> bool:
        """True when the section changes the device (a Jetson's modes and clocks, or NVML GPUs' limits)."""
        c = self.config
        return any(v is not None for v in (c.mode, c.clocks, c.idle_mode, c.thermal_limit_c))

    def _read_sample(self) -> TelemetrySample:
        if self._read is None:
            try:
                self._read = open_telemetry(self.sysroot)
            except PowerError as exc:  # no sensors (a desktop without NVML): the idle timer still ticks
                log.info("no power telemetry: %s", exc)
                self._read = lambda: TelemetrySample(time.time(), "none")
        return self._read()

    def on_start(self, stats: PipelineStats, control: PipelineControl) -> None:
        with self._lock:
            self._control = control
            self._last_detection = self.clock()
            self._started = True
            atexit.register(self.close)  # an exit through SystemExit (edge run's SIGTERM handler) restores too
            if self.needs_device:
                try:
                    self._start_device()
                except BaseException:
                    self.close()  # undo whatever part was applied
                    raise
        if self.threaded and (self.config.idle_enabled or self.config.thermal_limit_c is not None):
            self.telemetry.start()

    def _start_device(self) -> None:
        if self.controller is None:
            try:
                self.controller = open_power_controller(self.sysroot, gpus=self.gpus)
            except NotJetsonError as exc:
                raise NotJetsonError(
                    f"{exc}; the run config's power section (mode, clocks, idle_mode, thermal_limit_c) "
                    "needs one: remove those keys (fps_idle with idle_after works anywhere)"
                ) from exc
        ctl = self.controller
        modes = ctl.modes()
        c = self.config
        # Resolve every name first: a typo fails before anything changes.
        target = modes.resolve(c.mode) if c.mode else None
        self._idle_mode = modes.resolve(c.idle_mode) if c.idle_mode else None
        self._previous_mode = ctl.current_mode()
        self._base = target or self._previous_mode
        if c.thermal_limit_c is not None:
            live = ModeList(tuple(modes.live_from(self._base)), modes.default_id, modes.source, modes.tpc_masks)
            self._thermal_mode = modes.resolve(c.thermal_mode) if c.thermal_mode else live.lower_than(self._base)
            if self._thermal_mode is None and modes.lower_than(self._base) is not None:
                raise PowerError(
                    f"power.thermal_limit_c: every mode that draws less than {self._base.name} needs a reboot to "
                    f"switch to (nvpmodel.conf TPC_PG_MASK differs); modes that switch live from it: {', '.join(live.names)}; "
                    "set power.thermal_mode or pick another power.mode"
                )
            if self._thermal_mode is None:
                raise PowerError(
                    f"power.thermal_limit_c: no mode draws less than {self._base.name} on this device "
                    f"({', '.join(modes.names)}); set power.thermal_mode or pick a higher power.mode"
                )
        self._check_live(modes)
        self._previous_clocks = ctl.clocks_pinned()
        self._applied = self._previous_mode
        if target is not None and target.id != self._previous_mode.id:
            ctl.set_mode(target.name)
            self._applied = target
            self._emit("power", f"power mode {self._previous_mode.name} -> {target.name} (start)", "start")
        if c.clocks is not None and (c.clocks == "on") != bool(self._previous_clocks):
            ctl.set_clocks(c.clocks == "on")
            self._clocks_changed = True
            self._emit("power", f"clocks {'pinned' if c.clocks == 'on' else 'released'} (start)", "start")

    def _check_live(self, modes: ModeList) -> None:
        """Refuse, before anything changes, idle/thermal modes that nvpmodel cannot switch to without a reboot.

        Such a switch would fail at every idle or thermal transition (nvpmodel asks for a reboot, jtop
        refuses without a word); which modes switch live is read from the device's nvpmodel.conf.
        """
        base = self._base
        if base is None:
            return
        for key, mode in (("idle_mode", self._idle_mode), ("thermal_mode", self._thermal_mode)):
            if mode is None or not modes.needs_reboot(base, mode):
                continue
            live = ", ".join(m.name for m in modes.live_from(base))
            masks = dict(modes.tpc_masks)
            how = f"power.{key}"
            raise PowerError(
                f"{how}: {mode.name} does not switch live from {base.name}: nvpmodel asks for a reboot for it "
                f"(the modes power-gate different GPU TPCs, TPC_PG_MASK {masks[base.id]} vs {masks[mode.id]} in "
                f"/{device.CONF_PATH}); use a mode that switches live from {base.name}: {live}"
            )

    def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
        if not self.threaded:
            if len(frame.result) > 0:
                with self._lock:
                    self._last_detection = self.clock()
            if self.config.idle_enabled:
                self.evaluate()
            return
        # On the pipeline's result thread: no lock (the policy thread may hold it while nvpmodel runs);
        # a float attribute store is atomic, and the policy thread reads it once per evaluation.
        if len(frame.result) > 0:
            self._last_detection = self.clock()
            if self._idle:
                self.telemetry.wake()

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        """Events from the pipeline need nothing from the power policy."""

    def on_stop(self, stats: PipelineStats) -> None:
        self.close()

    def close(self) -> None:
        """Stop sampling and restore fps cap, mode (or desktop power limits) and clocks (idempotent; errors are logged)."""
        self.telemetry.stop()
        with self._lock:
            if not self._started:
                return
            self._started = False
            atexit.unregister(self.close)
            if self._fps_cap is not None and self._control is not None:
                self._control.set_fps_cap(None)
                self._fps_cap = None
            ctl = self.controller
            if ctl is None:
                return
            if self._clocks_changed:
                try:
                    if self._previous_clocks:
                        ctl.set_clocks(True)
                    else:
                        ctl.restore_clocks()
                    self._emit("power", "clocks restored (stop)", "stop")
                except PowerError as exc:
                    self._emit("power", f"could not restore the clocks: {exc}", "error")
                self._clocks_changed = False
            prev = self._previous_mode
            if prev is not None and self._applied is not None and self._applied.id != prev.id:
                try:
                    ctl.restore_mode(prev)
                    self._emit("power", f"power mode {self._applied.name} -> {prev.name} (stop)", "stop")
                    self._applied = prev
                except PowerError as exc:
                    self._emit("power", f"could not restore power mode {prev.name}: {exc}", "error")

    # -- decisions -----------------------------------------------------------------------------
    def _on_sample(self, sample: TelemetrySample) -> None:
        self.evaluate(sample)

    def evaluate(self, sample: TelemetrySample | None = None) -> None:
        """Update idle and thermal state from the clock and ``sample``, then apply mode and fps cap."""
        with self._lock:
            if not self._started:
                return
            now = self.clock()
            c = self.config
            if c.idle_enabled and c.idle_after is not None:
                quiet = now - self._last_detection
                if not self._idle and quiet >= c.idle_after:
                    self._idle = True
                    self._transition("power", "idle", f"no detections for {quiet:.0f}s (idle_after {c.idle_after:g}s)")
                elif self._idle and quiet < c.idle_after:
                    self._idle = False
                    self._transition("power", "active", "detection")
            if c.thermal_limit_c is not None and sample is not None:
                hottest = sample.max_temperature
                if hottest is not None:
                    zone, temp = hottest
                    if not self._hot and temp > c.thermal_limit_c:
                        self._hot = True
                        self._transition("thermal", "hot", f"{zone} at {temp:.1f}C > limit {c.thermal_limit_c:g}C")
                    elif self._hot and temp <= c.thermal_limit_c - c.thermal_hysteresis_c:
                        self._hot = False
                        low = c.thermal_limit_c - c.thermal_hysteresis_c
                        self._transition("thermal", "cool", f"hottest zone {zone} at {temp:.1f}C <= {low:g}C")

    def _desired_mode(self) -> Mode | None:
        wanted = [m for m in (self._base,) if m is not None]
        if self._idle and self._idle_mode is not None:
            wanted.append(self._idle_mode)
        if self._hot and self._thermal_mode is not None:
            wanted.append(self._thermal_mode)
        return min(wanted, key=power_rank) if wanted else None

    def _transition(self, kind: str, state: str, reason: str) -> None:
        """Apply what the new state asks for and report it as one event."""
        data: dict[str, Any] = {"state": state, "reason": reason}
        before = self._applied
        mode = self._desired_mode()
        if mode is not None and self.controller is not None and (before is None or mode.id != before.id):
            data["from"] = before.name if before else None
            data["to"] = mode.name
            try:
                self.controller.set_mode(mode.name)
                self._applied = mode
            except PowerError as exc:  # reported, and retried at the next transition
                data["error"] = str(exc)
        cap = self.config.fps_idle if (self._idle and self.config.fps_idle) else None
        if cap != self._fps_cap and self._control is not None:
            self._control.set_fps_cap(cap)
            self._fps_cap = cap
            data["fps_cap"] = cap
        change = f" -> {data['to']}" if "to" in data else ""
        failed = f" (FAILED: {data['error']})" if "error" in data else ""
        self._emit(kind, f"{state}{change}: {reason}{failed}", state, data)

    def _emit(self, kind: str, message: str, state: str, data: dict[str, Any] | None = None) -> None:
        payload = {"state": state, **(data or {})}
        (log.warning if state in ("error", "hot") or "error" in payload else log.info)("%s: %s", kind, message)
        if self.events is not None:
            try:
                self.events(kind, message, payload)
            except Exception as exc:  # a broken subscriber must not stop the policy
                log.error("power event subscriber failed: %s", exc)

    # -- metrics -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The policy's state and the latest telemetry, JSON-ready (for /v1/status and /metrics)."""
        with self._lock:
            sample = self.telemetry.latest()
            return {
                "mode": self._applied.name if self._applied else None,
                "base_mode": self._base.name if self._base else None,
                "idle": self._idle,
                "thermal_throttled": self._hot,
                "fps_cap": self._fps_cap,
                "telemetry": sample.as_dict() if sample else None,
            }


def is_jetson(sysroot: str | Path = "/") -> bool:
    return device.jetson_info(sysroot) is not None
