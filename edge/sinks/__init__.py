"""Sinks by URI: ``jsonl://events.jsonl`` (``jsonl://-`` for stdout), ``file://out.mp4`` (annotated video),
``mjpeg://0.0.0.0:8080`` (browser preview), ``display://`` (a window), ``mqtt://HOST:PORT/TOPIC`` and
``mqtts://`` (events to an MQTT broker, :mod:`edge.sinks.mqtt`).

A bare path is a sink too: ``*.jsonl`` / ``*.json`` -> events, a video suffix -> annotated video.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from edge.errors import ConfigError
from edge.sinks.base import FpsMeter, Sink
from edge.sinks.display import DisplaySink
from edge.sinks.files import VIDEO_FOURCC, JsonlSink, VideoSink, event_json
from edge.sinks.mjpeg import MjpegSink

__all__ = [
    "SINK_SCHEMES",
    "DisplaySink",
    "FpsMeter",
    "JsonlSink",
    "MjpegSink",
    "Sink",
    "VideoSink",
    "event_json",
    "open_sink",
]

SINK_SCHEMES = ("jsonl", "file", "mjpeg", "display", "mqtt", "mqtts")
_OPTIONS: dict[str, dict[str, type]] = {"file": {"fps": float}, "mjpeg": {"quality": int}, "jsonl": {}, "display": {}}


def _options(uri: str, scheme: str, query: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        kind = _OPTIONS[scheme].get(key)
        if kind is None:
            valid = ", ".join(_OPTIONS[scheme]) or "none"
            raise ConfigError(f"{uri}: unknown option {key!r} for {scheme}:// sinks; valid: {valid}")
        try:
            out[key] = kind(value)
        except ValueError:
            raise ConfigError(f"{uri}: option {key}={value!r} is not a valid {kind.__name__}") from None
        if out[key] <= 0:
            raise ConfigError(f"{uri}: option {key} must be > 0, got {value}")
    return out


def open_sink(uri: str, *, mqtt: Any = None) -> Sink:
    """A sink for ``uri`` (not yet opened); ConfigError for an unsupported scheme or a bad option.

    ``mqtt``: the run config's :class:`~edge.sinks.mqtt.MqttConfig` (credentials, TLS, queue) for mqtt:// sinks."""
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError(f"sink: expected a URI such as jsonl://events.jsonl or file://out.mp4, got {uri!r}")
    uri = uri.strip()
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", uri)
    if m is None:
        suffix = Path(uri).suffix.lower()
        if uri == "-" or suffix in (".jsonl", ".json", ".ndjson"):
            return JsonlSink(uri, uri)
        if suffix in VIDEO_FOURCC:
            return VideoSink(uri, uri)
        raise ConfigError(
            f"unsupported sink {uri!r}: use jsonl://PATH, file://out.mp4, mjpeg://HOST:PORT, mqtt://HOST:PORT/TOPIC "
            "or display://"
        )
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme not in SINK_SCHEMES:
        raise ConfigError(
            f"unsupported sink scheme {scheme}:// in {uri!r}; use one of " + ", ".join(f"{s}://" for s in SINK_SCHEMES)
        )
    if scheme in ("mqtt", "mqtts"):
        from edge.sinks.mqtt import MqttSink

        return MqttSink(uri, mqtt)
    target, _, query = rest.partition("?")
    opts = _options(uri, scheme, query)
    if scheme == "jsonl":
        if not target:
            raise ConfigError(f"{uri}: expected a path such as jsonl://events.jsonl (or jsonl://- for stdout)")
        return JsonlSink(uri, target)
    if scheme == "file":
        if not target:
            raise ConfigError(f"{uri}: expected a path such as file://out.mp4")
        if Path(target).suffix.lower() in (".jsonl", ".json", ".ndjson"):
            return JsonlSink(uri, target)
        if Path(target).suffix.lower() not in VIDEO_FOURCC:
            raise ConfigError(
                f"{uri}: unsupported video type; use one of {', '.join(VIDEO_FOURCC)} (or jsonl:// for events)"
            )
        return VideoSink(uri, target, fps=float(opts.get("fps", 30.0)))
    if scheme == "mjpeg":
        host, sep, port = target.rstrip("/").rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"{uri}: expected mjpeg://HOST:PORT such as mjpeg://0.0.0.0:8080")
        return MjpegSink(uri, host.strip("[]") or "0.0.0.0", int(port), quality=int(opts.get("quality", 80)))
    return DisplaySink(uri, target or "edge")
