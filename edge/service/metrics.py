"""Pipeline and API counters, rendered in the Prometheus text exposition format (version 0.0.4).

Everything is fed by the HTTP observer from pipeline callbacks and request handlers, so the numbers
describe the same run ``/v1/status`` describes. Power and temperature come from a telemetry callable
(:mod:`edge.power`'s latest sample) when one is available.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge.observer import FrameResult, PipelineStats

# Milliseconds: from sub-millisecond pre-processing to multi-second stalls.
LATENCY_BUCKETS_MS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000)

Telemetry = Callable[[], Mapping[str, Any] | None]


class Histogram:
    """Cumulative-bucket histogram (Prometheus semantics); thread-safe."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS_MS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        if math.isnan(value):
            return
        i = 0
        while i < len(self.buckets) and value > self.buckets[i]:
            i += 1
        with self._lock:
            self.counts[i] += 1
            self.sum += value
            self.count += 1

    def snapshot(self) -> tuple[list[tuple[str, int]], float, int]:
        with self._lock:
            counts, total, count = list(self.counts), self.sum, self.count
        cumulative, out = 0, []
        for bound, c in zip([*map(_num, self.buckets), "+Inf"], counts):
            cumulative += c
            out.append((bound, cumulative))
        return out, total, count


class Metrics:
    """The counters behind ``/metrics``."""

    def __init__(self, telemetry: Telemetry | None = None) -> None:
        self.started = time.time()
        self.telemetry = telemetry
        self.stage_ms: dict[str, Histogram] = {}
        self.http: dict[tuple[str, str, int], int] = {}
        self.events: dict[str, int] = {}
        self.infer_ms = Histogram()
        self.stats = PipelineStats()
        self.state = "starting"
        # Re-entrant: the pipeline's "stopping" event can reach on_event from a signal handler on the main
        # thread, which may have been interrupted inside this lock.
        self._lock = threading.RLock()

    def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
        self.stats = stats
        for stage, ms in frame.timings_ms.items():
            self._stage(stage).observe(ms)
        if frame.result_time and frame.capture_time:
            self._stage("end_to_end").observe(max(0.0, (frame.result_time - frame.capture_time) * 1000.0))

    def on_event(self, kind: str) -> None:
        with self._lock:
            self.events[kind] = self.events.get(kind, 0) + 1

    def on_request(self, method: str, route: str, code: int) -> None:
        with self._lock:
            key = (method, route, code)
            self.http[key] = self.http.get(key, 0) + 1

    def _stage(self, stage: str) -> Histogram:
        hist = self.stage_ms.get(stage)
        if hist is None:
            with self._lock:
                hist = self.stage_ms.setdefault(stage, Histogram())
        return hist

    def read_telemetry(self) -> dict[str, Any]:
        """The latest telemetry sample as a dict (``TelemetrySample.as_dict()``), ``{}`` when there is none."""
        if self.telemetry is None:
            return {}
        try:
            return dict(self.telemetry() or {})
        except Exception:  # telemetry is best effort; /metrics and /v1/status must still answer
            return {}

    def render(self) -> str:
        s = self.stats
        lines: list[str] = []
        _metric(
            lines,
            "edge_up",
            "gauge",
            "1 while the pipeline runs, 0 while starting or stopped",
            [("", 1 if self.state == "running" else 0)],
        )
        _metric(
            lines,
            "edge_uptime_seconds",
            "gauge",
            "Seconds since the service started",
            [("", time.time() - self.started)],
        )
        _metric(lines, "edge_fps", "gauge", "Processed frames per second", [("", s.fps)])
        _metric(lines, "edge_frames_total", "counter", "Frames processed", [("", s.frames)])
        _metric(
            lines,
            "edge_dropped_frames_total",
            "counter",
            "Frames dropped (live sources keep only the newest)",
            [("", s.dropped)],
        )
        _metric(lines, "edge_reconnects_total", "counter", "Source reconnects", [("", s.reconnects)])
        states = [(_labels(source=src, state=st), 1) for src, st in sorted(s.source_state.items())]
        _metric(lines, "edge_source_state", "gauge", "1 for each source's current state", states)
        with self._lock:
            events = sorted(self.events.items())
            http = sorted(self.http.items())
            stages = sorted(self.stage_ms.items())
        _metric(
            lines, "edge_events_total", "counter", "Pipeline events by kind", [(_labels(kind=k), n) for k, n in events]
        )
        lines += [
            "# HELP edge_stage_latency_ms Per-stage latency in milliseconds",
            "# TYPE edge_stage_latency_ms histogram",
        ]
        for stage, hist in stages:
            _histogram(lines, "edge_stage_latency_ms", hist, {"stage": stage})
        lines += [
            "# HELP edge_http_infer_latency_ms POST /v1/infer latency in milliseconds",
            "# TYPE edge_http_infer_latency_ms histogram",
        ]
        _histogram(lines, "edge_http_infer_latency_ms", self.infer_ms, {})
        requests = [(_labels(method=m, route=r, code=str(c)), n) for (m, r, c), n in http]
        _metric(lines, "edge_http_requests_total", "counter", "HTTP requests by route and status", requests)
        _telemetry(lines, self.read_telemetry())
        return "\n".join(lines) + "\n"


def _telemetry(lines: list[str], t: Mapping[str, Any]) -> None:
    """Power, temperatures, GPU load from a TelemetrySample dict (Jetson sysfs or NVML)."""
    if not t:
        return
    temps = [(_labels(zone=str(z)), float(c)) for z, c in sorted((t.get("temperatures_c") or {}).items())]
    gpus = [g for g in t.get("gpus") or () if isinstance(g, Mapping)]
    temps += [
        (_labels(zone=f"gpu{g.get('index')}"), float(g["temperature_c"]))
        for g in gpus
        if _is_num(g.get("temperature_c"))
    ]
    if temps:
        _metric(lines, "edge_temperature_celsius", "gauge", "Temperatures by thermal zone", temps)
    if _is_num(t.get("power_w")):
        _metric(
            lines,
            "edge_power_watts",
            "gauge",
            "Total input power (Jetson VDD_IN, or the sum of GPUs)",
            [("", t["power_w"])],
        )
    rails = [r for r in t.get("rails") or () if isinstance(r, Mapping) and _is_num(r.get("power_w"))]
    if rails:
        _metric(
            lines,
            "edge_rail_power_watts",
            "gauge",
            "Power by INA3221 rail",
            [(_labels(rail=str(r.get("name"))), r["power_w"]) for r in rails],
        )
    if _is_num(t.get("gpu_load_pct")):
        _metric(lines, "edge_gpu_load_percent", "gauge", "GPU load", [("", t["gpu_load_pct"])])
    loads = [
        (_labels(gpu=str(g.get("index"))), g["utilization_pct"]) for g in gpus if _is_num(g.get("utilization_pct"))
    ]
    if loads:
        _metric(lines, "edge_gpu_utilization_percent", "gauge", "GPU utilisation by GPU (NVML)", loads)
    watts = [(_labels(gpu=str(g.get("index"))), g["power_w"]) for g in gpus if _is_num(g.get("power_w"))]
    if watts:
        _metric(lines, "edge_gpu_power_watts", "gauge", "Power by GPU (NVML)", watts)
    if t.get("mode") is not None:
        mode = [(_labels(mode=str(t["mode"]), id=str(t.get("mode_id"))), 1)]
        _metric(lines, "edge_power_mode_info", "gauge", "The current nvpmodel power mode", mode)
    if isinstance(t.get("clocks_pinned"), bool):
        _metric(
            lines,
            "edge_clocks_pinned",
            "gauge",
            "1 when jetson_clocks pins the clocks",
            [("", int(t["clocks_pinned"]))],
        )


def _is_num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}" if labels else ""


def _metric(lines: list[str], name: str, kind: str, help_text: str, samples: Sequence[tuple[str, float]]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{labels} {_num(value)}" for labels, value in samples]


def _histogram(lines: list[str], name: str, hist: Histogram, labels: dict[str, str]) -> None:
    buckets, total, count = hist.snapshot()
    for bound, cumulative in buckets:
        lines.append(f"{name}_bucket{_labels(**labels, le=bound)} {cumulative}")
    lines.append(f"{name}_sum{_labels(**labels)} {_num(total)}")
    lines.append(f"{name}_count{_labels(**labels)} {count}")


class PowerTelemetry:
    """The latest sample of :mod:`edge.power.telemetry`, read every ``interval`` seconds on its own thread."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler

    @classmethod
    def open(cls, sysroot: str = "/", interval: float = 5.0) -> PowerTelemetry | None:
        """None when this machine has no sensors the power module can read (no Jetson files, no NVML)."""
        from edge.errors import EdgeError
        from edge.power.telemetry import TelemetrySampler, open_telemetry

        try:
            sampler = TelemetrySampler(open_telemetry(sysroot), interval)
        except (EdgeError, OSError, ImportError):
            return None
        sampler.start()
        return cls(sampler)

    def __call__(self) -> Mapping[str, Any] | None:
        sample = self.sampler.latest()
        return sample.as_dict() if sample is not None else None

    def close(self) -> None:
        self.sampler.stop()
