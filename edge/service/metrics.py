"""Pipeline and API metrics on ``prometheus-client``, one registry per service instance.

:class:`Metrics` owns a :class:`prometheus_client.CollectorRegistry` (never the global one, so two services
in one process, or two tests, never collide). Latencies are real ``Histogram`` objects observed as frames
and requests complete; counters that the pipeline already keeps (frames, drops, reconnects, source states)
and the power/thermal telemetry are read at scrape time by a custom collector, so ``/metrics`` and
``/v1/status`` describe the same numbers.

Other modules add their own metrics to the same registry with a function
``register_metrics(registry: CollectorRegistry) -> None`` passed to :func:`edge.service.attach` (or to
:meth:`Metrics.register`): it creates its ``Counter``/``Gauge``/``Histogram`` with ``registry=registry`` or
registers a custom collector.

``prometheus_client`` is imported here, and this module is only imported by the service, never by
``import edge``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.process_collector import ProcessCollector

from edge.observer import FrameResult, PipelineStats

# Milliseconds: from sub-millisecond pre-processing to multi-second stalls.
LATENCY_BUCKETS_MS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000)
# What generate_latest writes for plain metric names (newer clients call 1.0.0 "latest"; every Prometheus reads this).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Telemetry = Callable[[], Mapping[str, Any] | None]
MetricsSource = Callable[[CollectorRegistry], None]


class Metrics:
    """The registry behind ``/metrics`` and the state ``/v1/status`` reads."""

    def __init__(self, telemetry: Telemetry | None = None, *, process: bool = True) -> None:
        self.started = time.time()
        self.telemetry = telemetry
        self.stats = PipelineStats()
        self.state = "starting"
        self.registry = CollectorRegistry()
        self.stage_ms = Histogram(
            "edge_stage_latency_ms",
            "Per-stage latency in milliseconds",
            ["stage"],
            buckets=LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self.infer_ms = Histogram(
            "edge_http_infer_latency_ms",
            "POST /v1/infer latency in milliseconds",
            buckets=LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "edge_http_requests_total",
            "HTTP requests by route and status",
            ["method", "route", "code"],
            registry=self.registry,
        )
        # Events are counted in a plain dict under a re-entrant lock: the pipeline's "stopping" event can reach
        # on_event from a signal handler on the main thread, which may have been interrupted inside this lock
        # (prometheus-client's own locks are not re-entrant).
        self.events: dict[str, int] = {}
        self._events_lock = threading.RLock()
        self.registry.register(_PipelineCollector(self))
        if process:  # process_resident_memory_bytes, process_cpu_seconds_total, open fds (Linux /proc)
            ProcessCollector(registry=self.registry)

    def register(self, source: MetricsSource) -> None:
        """Let another module add its metrics: ``source(self.registry)``."""
        source(self.registry)

    def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
        self.stats = stats
        for stage, ms in frame.timings_ms.items():
            _observe(self.stage_ms.labels(stage), ms)
        if frame.result_time and frame.capture_time:
            _observe(self.stage_ms.labels("end_to_end"), max(0.0, (frame.result_time - frame.capture_time) * 1000.0))

    def on_event(self, kind: str) -> None:
        with self._events_lock:
            self.events[kind] = self.events.get(kind, 0) + 1

    def on_request(self, method: str, route: str, code: int) -> None:
        self.http_requests.labels(method, route, str(code)).inc()

    def read_telemetry(self) -> dict[str, Any]:
        """The latest telemetry sample as a dict (``TelemetrySample.as_dict()``), ``{}`` when there is none."""
        if self.telemetry is None:
            return {}
        try:
            return dict(self.telemetry() or {})
        except Exception:  # telemetry is best effort; /metrics and /v1/status must still answer
            return {}

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


def _observe(hist: Any, value: float) -> None:
    if not math.isnan(value):
        hist.observe(value)


class _PipelineCollector:
    """Counters the pipeline keeps itself, and telemetry, read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m, s = self.metrics, self.metrics.stats
        yield _gauge("edge_up", "1 while the pipeline runs, 0 while starting or stopped", int(m.state == "running"))
        yield _gauge("edge_uptime_seconds", "Seconds since the service started", time.time() - m.started)
        yield _gauge("edge_fps", "Processed frames per second", s.fps)
        yield CounterMetricFamily("edge_frames", "Frames processed", value=s.frames)
        yield CounterMetricFamily(
            "edge_dropped_frames", "Frames dropped (live sources keep only the newest)", value=s.dropped
        )
        yield CounterMetricFamily("edge_reconnects", "Source reconnects", value=s.reconnects)
        states = GaugeMetricFamily("edge_source_state", "1 for each source's current state", labels=["source", "state"])
        for src, st in sorted(s.source_state.items()):
            states.add_metric([src, st], 1)
        yield states
        events = CounterMetricFamily("edge_events", "Pipeline events by kind", labels=["kind"])
        with m._events_lock:
            counts = sorted(m.events.items())
        for kind, n in counts:
            events.add_metric([kind], n)
        yield events
        yield from _telemetry(m.read_telemetry())


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _labelled(name: str, help_text: str, label: str, samples: list[tuple[str, float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=[label])
    for key, value in samples:
        family.add_metric([key], value)
    return family


def _telemetry(t: Mapping[str, Any]) -> Iterator[Metric]:
    """Power, temperatures, GPU load from a TelemetrySample dict (Jetson sysfs or NVML)."""
    if not t:
        return
    temps = [(str(z), float(c)) for z, c in sorted((t.get("temperatures_c") or {}).items()) if _is_num(c)]
    gpus = [g for g in t.get("gpus") or () if isinstance(g, Mapping)]
    temps += [(f"gpu{g.get('index')}", float(g["temperature_c"])) for g in gpus if _is_num(g.get("temperature_c"))]
    if temps:
        yield _labelled("edge_temperature_celsius", "Temperatures by thermal zone", "zone", temps)
    if _is_num(t.get("power_w")):
        yield _gauge("edge_power_watts", "Total input power (Jetson VDD_IN, or the sum of GPUs)", t["power_w"])
    rails = [(str(r.get("name")), r["power_w"]) for r in t.get("rails") or () if isinstance(r, Mapping)]
    rails = [(name, w) for name, w in rails if _is_num(w)]
    if rails:
        yield _labelled("edge_rail_power_watts", "Power by INA3221 rail", "rail", rails)
    if _is_num(t.get("gpu_load_pct")):
        yield _gauge("edge_gpu_load_percent", "GPU load", t["gpu_load_pct"])
    loads = [(str(g.get("index")), g["utilization_pct"]) for g in gpus if _is_num(g.get("utilization_pct"))]
    if loads:
        yield _labelled("edge_gpu_utilization_percent", "GPU utilisation by GPU (NVML)", "gpu", loads)
    watts = [(str(g.get("index")), g["power_w"]) for g in gpus if _is_num(g.get("power_w"))]
    if watts:
        yield _labelled("edge_gpu_power_watts", "Power by GPU (NVML)", "gpu", watts)
    if t.get("mode") is not None:
        mode = GaugeMetricFamily("edge_power_mode_info", "The current nvpmodel power mode", labels=["mode", "id"])
        mode.add_metric([str(t["mode"]), str(t.get("mode_id"))], 1)
        yield mode
    if isinstance(t.get("clocks_pinned"), bool):
        yield _gauge("edge_clocks_pinned", "1 when jetson_clocks pins the clocks", int(t["clocks_pinned"]))


def _is_num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
