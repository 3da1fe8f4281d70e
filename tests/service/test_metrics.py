"""/metrics content (prometheus-client): histograms, escaping, registries, and Jetson telemetry read from a sysroot."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.observer import FrameResult, PipelineStats
from edge.results import Detections
from edge.runtime.model import Model
from edge.service.config import HttpConfig
from edge.service.http import HttpObserver
from edge.service.metrics import Metrics, PowerTelemetry
from tests.power.conftest import RAILS, build_sysroot
from tests.service import promtext
from tests.service.conftest import Client


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.5], {"0.5": 1, "1.0": 1, "+Inf": 1}),  # the bound is inclusive (le)
        ([0.2, 0.7, 3.0, 9999.0], {"0.5": 1, "1.0": 2, "5.0": 3, "5000.0": 3, "+Inf": 4}),
    ],
)
def test_stage_histogram_buckets_are_cumulative(values: list[float], expected: dict[str, int]) -> None:
    m = Metrics(process=False)
    for v in values:
        m.on_frame(FrameResult(1, "s", 0.0, 0.0, Detections.empty(), timings_ms={"infer": v}), PipelineStats())
    samples, _ = promtext.parse(m.render().decode())
    for bound, n in expected.items():
        assert promtext.value(samples, "edge_stage_latency_ms_bucket", stage="infer", le=bound) == n, bound
    assert promtext.value(samples, "edge_stage_latency_ms_count", stage="infer") == len(values)
    assert promtext.value(samples, "edge_stage_latency_ms_sum", stage="infer") == pytest.approx(sum(values))


def test_each_service_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()  # would raise "Duplicated timeseries" on one shared registry
    a.on_request("GET", "/metrics", 200)
    sa, _ = promtext.parse(a.render().decode())
    sb, types = promtext.parse(b.render().decode())
    assert promtext.value(sa, "edge_http_requests_total", method="GET", route="/metrics", code="200") == 1
    assert ("edge_http_requests_total", (("code", "200"), ("method", "GET"), ("route", "/metrics"))) not in sb
    assert types["process_resident_memory_bytes"] == "gauge"  # the process collector (Linux /proc)


def test_other_modules_register_their_metrics() -> None:
    """The contract for tracking/analytics/MQTT: a function taking the service's registry."""
    from prometheus_client import CollectorRegistry, Counter

    counters: list[Counter] = []

    def register_metrics(registry: CollectorRegistry) -> None:
        counters.append(Counter("edge_test_things", "Things counted", ["what"], registry=registry))

    m = Metrics(process=False)
    m.register(register_metrics)
    counters[0].labels("cars").inc(3)
    samples, types = promtext.parse(m.render().decode())
    assert types["edge_test_things_total"] == "counter"
    assert promtext.value(samples, "edge_test_things_total", what="cars") == 3


def test_labels_are_escaped_and_the_text_parses() -> None:
    m = Metrics()
    m.state = "running"
    stats = PipelineStats(frames=7, fps=12.5, source_state={'rtsp://cam/"a"\\b': "reconnecting"})
    m.on_frame(FrameResult(1, "s", 10.0, 10.25, Detections.empty(), timings_ms={"infer": 4.0}), stats)
    m.on_event("reconnect")
    samples, types = promtext.parse(m.render().decode())
    assert promtext.value(samples, "edge_source_state", source='rtsp://cam/\\"a\\"\\\\b', state="reconnecting") == 1
    assert promtext.value(samples, "edge_stage_latency_ms_bucket", stage="end_to_end", le="250.0") == 1
    assert promtext.value(samples, "edge_stage_latency_ms_bucket", stage="end_to_end", le="150.0") == 0
    assert promtext.value(samples, "edge_events_total", kind="reconnect") == 1
    assert promtext.value(samples, "edge_frames_total") == 7
    assert "edge_temperature_celsius" not in types  # no telemetry, no made-up numbers


def test_jetson_telemetry_in_metrics_and_status(tmp_path: Path, face_model: Model, token_file: Path) -> None:
    jetson = build_sysroot(tmp_path / "sysroot", "agx-orin-64gb")  # real-format /sys and /etc files
    telemetry = PowerTelemetry.open(str(jetson.root), interval=3600)
    assert telemetry is not None
    assert telemetry.sampler.sample() is not None  # one reading now, instead of waiting for the timer
    config = HttpConfig.from_dict({"listen": "127.0.0.1:0", "token_file": str(token_file)})
    observer = HttpObserver(config, face_model, telemetry=telemetry, environ={})
    try:
        client = Client(observer.port)
        samples, types = promtext.parse(client.get("/metrics").body.decode())
        status = client.get("/v1/status").json()
    finally:
        observer.close()
    assert not telemetry.sampler.running  # closed with the observer
    assert promtext.value(samples, "edge_temperature_celsius", zone="cpu-thermal") == 48.5
    assert promtext.value(samples, "edge_temperature_celsius", zone="tj-thermal") == 49.125
    label, mv, ma = RAILS[0]
    assert promtext.value(samples, "edge_power_watts") == pytest.approx(mv * ma / 1e6, rel=1e-3)
    assert promtext.value(samples, "edge_rail_power_watts", rail=label) == pytest.approx(mv * ma / 1e6, rel=1e-3)
    assert promtext.value(samples, "edge_gpu_load_percent") == pytest.approx(37.2)
    assert promtext.value(samples, "edge_power_mode_info", mode="MODE_30W", id="2") == 1
    assert types["edge_power_watts"] == "gauge"
    assert status["telemetry"]["temperatures_c"]["cpu-thermal"] == 48.5
    assert status["telemetry"]["mode"] == "MODE_30W"


def test_failing_telemetry_never_breaks_metrics() -> None:
    def broken() -> dict[str, float]:
        raise OSError("EAGAIN from cv0-thermal")

    for telemetry in (None, broken):
        m = Metrics(telemetry)
        assert m.read_telemetry() == {}
        samples, types = promtext.parse(m.render().decode())
        assert "edge_temperature_celsius" not in types and promtext.value(samples, "edge_up") == 0
