"""The ``edge run`` configuration file, validated in one place.

    model: face.bundle                # or {bundle: face.bundle, backend: auto, warmup: 2, threads: 0, gpu: 0}
    source: rtsp://camera:8554/live   # or sources: [csi://0, file://clip.mp4]
    sinks: [jsonl://events.jsonl, file://annotated.mp4, mjpeg://0.0.0.0:8080]
    pipeline: {fps_cap: 15, stride: 1, max_frames: null, duration: 10m, batch: null, queue_size: 2}
    power: {...}                      # edge.power.config.PowerConfig
    http: {...}                       # edge.service.config.HttpConfig
    service: {...}                    # edge.service.config.ServiceConfig
    tracker: bytetrack                # edge.events.config: bytetrack, iou, none, or a mapping
    analytics: {lines: [...], zones: [...]}   # edge.events.config.analytics_config
    mqtt: {...}                       # edge.sinks.mqtt.MqttConfig: credentials, TLS, queue for mqtt:// sinks

Wrong types, bad values and unknown keys are :class:`~edge.errors.ConfigError` naming the key path
(``pipeline.fps_cap``, ``sources[1]``). Source and sink URIs are checked here too (scheme and
options), without opening anything. Relative paths are relative to the working directory, except
the HTTP token file, which is relative to the config file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.configkit import Reader
from edge.errors import ConfigError, first_line

TOP_LEVEL = (
    "model",
    "source",
    "sources",
    "sinks",
    "pipeline",
    "power",
    "http",
    "service",
    "tracker",
    "analytics",
    "mqtt",
)


@dataclass(frozen=True)
class ModelConfig:
    bundle: str
    backend: str | None = None  # None: the best artifact for this machine
    warmup: int = 2
    threads: int = 0  # ONNX Runtime intra-op threads (0: its default)
    gpu: str | None = None  # which GPU of several: nvidia-smi's index or UUID (None: GPU 0)


@dataclass(frozen=True)
class PipelineConfig:
    fps_cap: float | None = None
    stride: int = 1
    max_frames: int | None = None
    duration: float | None = None
    batch: int | None = None
    queue_size: int = 2


@dataclass
class RunConfig:
    model: ModelConfig
    sources: list[str]
    sinks: list[str] = field(default_factory=list)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    power: Any = None  # edge.power.config.PowerConfig when the section is present
    http: Any = None  # edge.service.config.HttpConfig when the section is present
    service: Any = None  # edge.service.config.ServiceConfig when the section is present
    path: Path | None = None  # the file it was read from
    tracker: Any = None  # edge.events.tracking.TrackerConfig, or None (no tracking)
    analytics: Any = None  # edge.events.analytics.AnalyticsConfig when the section is present
    mqtt: Any = None  # edge.sinks.mqtt.MqttConfig when the section is present

    @classmethod
    def from_dict(cls, data: object, base_dir: Path | None = None) -> RunConfig:
        r = Reader(data, "")
        for key in r.data:
            if key not in TOP_LEVEL:
                raise ConfigError(f"{key}: unknown key (known keys here: {', '.join(TOP_LEVEL)})")
        model = _model(r)
        sources = _sources(r)
        sinks = _sinks(r)
        pipeline = _pipeline(r.section("pipeline"))
        power = http = service = None
        if r.has("power"):
            from edge.power.config import PowerConfig

            power = PowerConfig.from_dict(r.raw("power", {}), path="power")
        if r.has("http"):
            from edge.service.config import HttpConfig

            http = HttpConfig.from_dict(r.raw("http", {}), path="http", base_dir=base_dir)
        if r.has("service"):
            from edge.service.config import ServiceConfig

            service = ServiceConfig.from_dict(r.raw("service", {}), path="service")
        tracker, analytics = _events(r)
        mqtt = None
        if r.has("mqtt"):
            from edge.sinks.mqtt import MqttConfig

            mqtt = MqttConfig.from_dict(r.raw("mqtt", {}), path="mqtt", base_dir=base_dir)
        r.finish()
        if analytics is None:
            _check_mqtt_publish(sinks)
        return cls(
            model, sources, sinks, pipeline, power, http, service, tracker=tracker, analytics=analytics, mqtt=mqtt
        )


def _model(r: Reader) -> ModelConfig:
    value = r.raw("model")
    if isinstance(value, str):
        if not value.strip():
            raise ConfigError("model: expected the path of a bundle, got an empty string")
        return ModelConfig(value)
    from edge.runtime.select import BACKEND_CHOICES

    m = r.section("model")
    backend = m.str("backend", "auto", ("auto", *BACKEND_CHOICES))
    cfg = ModelConfig(
        bundle=m.str("bundle"),
        backend=None if backend == "auto" else backend,
        warmup=m.int("warmup", 2, min=0),
        threads=m.int("threads", 0, min=0),
        gpu=_gpu(m),
    )
    m.finish()
    return cfg


def _gpu(m: Reader) -> str | None:
    """``model.gpu``: an index (0, 1, ...) or a GPU UUID (``GPU-...``); checked against the machine at load."""
    value = m.raw("gpu", None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, int) and value < 0):
        raise ConfigError(f"{m.where('gpu')}: expected a GPU index (0, 1, ...) or UUID (GPU-...), got {value!r}")
    text = str(value).strip()
    if not (text.isdigit() or text.lower().startswith(("gpu-", "mig-"))):
        raise ConfigError(f"{m.where('gpu')}: expected a GPU index (0, 1, ...) or UUID (GPU-...), got {value!r}")
    return text


def _sources(r: Reader) -> list[str]:
    from edge.sources import parse_source_uri

    if r.has("source") and r.has("sources"):
        raise ConfigError("source: give either source (one URI) or sources (a list), not both")
    if r.has("sources"):
        items = r.list("sources")
        key = "sources"
        if not items:
            raise ConfigError("sources: the list is empty; give at least one source URI")
    else:
        items = [r.str("source")]
        key = "source"
    out = []
    for i, uri in enumerate(items):
        where = f"{key}[{i}]" if key == "sources" else key
        if not isinstance(uri, str):
            raise ConfigError(f"{where}: expected a URI string such as rtsp://host/path, got {uri!r}")
        try:
            parse_source_uri(uri)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        out.append(uri)
    return out


def _events(r: Reader) -> tuple[Any, Any]:
    """The tracker and analytics sections; analytics without a tracker tracks with bytetrack."""
    if not r.has("tracker") and not r.has("analytics"):
        return None, None
    from edge.events.config import analytics_config, tracker_config
    from edge.events.tracking import TrackerConfig

    tracker = tracker_config(r.raw("tracker", None)) if r.has("tracker") else None
    analytics = analytics_config(r.raw("analytics", {})) if r.has("analytics") else None
    if analytics is not None and tracker is None:
        if r.has("tracker"):
            raise ConfigError(
                "tracker: analytics needs track ids; use bytetrack or iou (or drop the analytics section)"
            )
        tracker = TrackerConfig()
    return tracker, analytics


def _check_mqtt_publish(sinks: list[str]) -> None:
    """An mqtt:// sink that publishes frames with events needs analytics, or it would never send anything."""
    for i, uri in enumerate(sinks):
        if uri.strip().lower().startswith(("mqtt://", "mqtts://")):
            from edge.sinks.mqtt import parse_mqtt_uri

            if parse_mqtt_uri(uri)[4].get("publish", "events") == "events":
                raise ConfigError(
                    f"sinks[{i}]: {uri} publishes frames with analytics events, but the config has no analytics "
                    "section: add lines or zones (docs/events.md), or use ?publish=detections"
                )


def _sinks(r: Reader) -> list[str]:
    from edge.sinks import open_sink

    items = r.list("sinks", [])
    for i, uri in enumerate(items):
        if not isinstance(uri, str):
            raise ConfigError(f"sinks[{i}]: expected a URI string such as jsonl://events.jsonl, got {uri!r}")
        try:
            open_sink(uri)  # checks scheme and options; opens nothing
        except ConfigError as exc:
            raise ConfigError(f"sinks[{i}]: {exc}") from None
    return list(items)


def _pipeline(p: Reader) -> PipelineConfig:
    fps_cap = p.float("fps_cap", None, min=0)
    if fps_cap is not None and fps_cap <= 0:
        raise ConfigError(f"pipeline.fps_cap: must be > 0 frames per second, got {fps_cap}")
    duration = p.duration("duration", None)
    if duration is not None and duration <= 0:
        raise ConfigError(f"pipeline.duration: must be more than 0 seconds, got {duration}")
    cfg = PipelineConfig(
        fps_cap=fps_cap,
        stride=p.int("stride", 1, min=1),
        max_frames=p.int("max_frames", None, min=1),
        duration=duration,
        batch=p.int("batch", None, min=1),
        queue_size=p.int("queue_size", 2, min=1, max=64),
    )
    p.finish()
    return cfg


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in a YAML (or JSON) config file; a one-line ConfigError naming the file (and the line)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or first_line(exc, type(exc).__name__)
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{p}: the file is empty; it needs at least model and source")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping with model, source and sinks, got a {type(data).__name__}")
    return data


def load_run_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a run config (YAML or JSON); ConfigError naming the file and the key path."""
    p = Path(path)
    data = read_config_file(p)
    try:
        cfg = RunConfig.from_dict(data, base_dir=p.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    cfg.path = p
    return cfg
