"""The ``tracker`` and ``analytics`` sections of a run config (read through :mod:`edge.configkit`).

tracker: bytetrack              # or iou, none, or {type: bytetrack, track_threshold: 0.5, low_threshold: 0.1,
                                #                   min_iou: 0.2, max_lost: 30, min_hits: 2}
analytics:
  anchor: center                # or bottom_center (feet / wheels)
  margin: 5                     # pixels of hysteresis on both sides of a line or zone edge
  lines:
    - {name: door, points: [[320, 0], [320, 480]], classes: [person]}
  zones:
    - {name: bay, polygon: [[0, 300], [640, 300], [640, 480], [0, 480]]}
"""

from __future__ import annotations

from typing import Any

from edge.configkit import Reader
from edge.errors import ConfigError
from edge.events.analytics import ANCHORS, AnalyticsConfig, LineSpec, ZoneSpec
from edge.events.tracking import TRACKERS, TrackerConfig

TRACKER_CHOICES = (*TRACKERS, "none")


def tracker_config(value: Any, where: str = "tracker") -> TrackerConfig | None:
    """``bytetrack`` / ``iou`` / ``none`` (None) or a mapping with ``type`` and the tuning keys."""
    if value is None or isinstance(value, str):
        kind = "none" if value is None else value
        if kind not in TRACKER_CHOICES:
            raise ConfigError(f"{where}: {kind!r} is not one of {', '.join(TRACKER_CHOICES)}")
        return None if kind == "none" else TrackerConfig(kind)
    r = Reader(value, where)
    kind = r.str("type", "bytetrack", TRACKERS)
    track = r.float("track_threshold", 0.5, min=0, max=1)
    cfg = TrackerConfig(
        kind=kind,
        track_threshold=track,
        low_threshold=r.float("low_threshold", 0.1, min=0, max=1),
        min_iou=r.float("min_iou", None, min=0, max=1),
        max_lost=r.int("max_lost", 30, min=0),
        min_hits=r.int("min_hits", 2, min=1),
    )
    r.finish()
    if cfg.low_threshold > cfg.track_threshold:
        raise ConfigError(f"{where}.low_threshold: must be <= track_threshold ({track}), got {cfg.low_threshold}")
    return cfg


def _point(value: Any, where: str) -> tuple[float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    if ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return float(value[0]), float(value[1])
    raise ConfigError(f"{where}: expected a point [x, y] in source pixels, got {value!r}")


def _classes(r: Reader) -> tuple[str | int, ...]:
    items = r.list("classes", [])
    for i, c in enumerate(items):
        if isinstance(c, bool) or not isinstance(c, (str, int)) or c == "":
            raise ConfigError(f"{r.where('classes')}[{i}]: expected a label (person) or a class id (0), got {c!r}")
    return tuple(items)


def _name(r: Reader, seen: set[str]) -> str:
    name = r.str("name")
    if not name.strip():
        raise ConfigError(f"{r.where('name')}: must not be empty")
    if name in seen:
        raise ConfigError(f"{r.where('name')}: {name!r} is used twice; every line and zone needs its own name")
    seen.add(name)
    return name


def analytics_config(value: Any, where: str = "analytics") -> AnalyticsConfig:
    r = Reader(value, where)
    anchor = r.str("anchor", "center", ANCHORS)
    margin = r.float("margin", 5.0, min=0)
    seen: set[str] = set()
    lines = []
    for i, item in enumerate(r.list("lines", [])):
        lr = Reader(item, f"{where}.lines[{i}]")
        name = _name(lr, seen)
        pts = lr.list("points")
        if len(pts) != 2:
            raise ConfigError(f"{lr.where('points')}: expected two points [[x1, y1], [x2, y2]], got {len(pts)}")
        p1, p2 = (_point(p, f"{lr.where('points')}[{k}]") for k, p in enumerate(pts))
        if p1 == p2:
            raise ConfigError(f"{lr.where('points')}: the two points are the same; a line needs two distinct points")
        lines.append(LineSpec(name, (p1, p2), _classes(lr)))
        lr.finish()
    zones = []
    for i, item in enumerate(r.list("zones", [])):
        zr = Reader(item, f"{where}.zones[{i}]")
        name = _name(zr, seen)
        pts = zr.list("polygon")
        if len(pts) < 3:
            raise ConfigError(f"{zr.where('polygon')}: a polygon needs at least 3 points, got {len(pts)}")
        polygon = tuple(_point(p, f"{zr.where('polygon')}[{k}]") for k, p in enumerate(pts))
        zones.append(ZoneSpec(name, polygon, _classes(zr)))
        zr.finish()
    r.finish()
    cfg = AnalyticsConfig(tuple(lines), tuple(zones), anchor, margin)
    if not cfg:
        raise ConfigError(f"{where}: give at least one line or zone (or leave the section out)")
    return cfg
