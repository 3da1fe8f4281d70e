"""Line crossing and zone occupancy from tracked detections, as events and counters.

Coordinates are source pixels. Each tracked detection is reduced to one anchor point (the box centre,
or the middle of its bottom edge for people and vehicles on the ground: ``anchor: bottom_center``).

**Lines.** A line has a direction, from its first point to its second. Seen on the image as shown
(y grows downwards), a point is on the line's *left* or *right* as for someone walking along the line
from the first point to the second. ``direction: "in"`` is a crossing from the left to the right,
``"out"`` from the right to the left. For ``[[320, 0], [320, 480]]`` (drawn top to bottom) the left is
the image's right half, so moving from x > 320 to x < 320 is "in"; for a line drawn left to right,
moving down the image is "in". A crossing counts when the anchor, on the other side of the line by
more than ``margin`` pixels and within the segment's extent, was last seen on the first side by more
than ``margin``: a track that stays near the line, jittering across it, is counted once, when it
really leaves to the other side (and once more only if it really comes back).

**Zones.** A polygon. A track enters when its anchor is inside by more than ``margin`` pixels and
leaves when it is outside by more than ``margin`` (or when the tracker drops the track while it is
inside: ``zone_left`` with ``"lost": true``); ``dwell_s`` is the time between the two, measured on the
frames' capture times. Occupancy is the number of tracks inside now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.results import Detections

ANCHORS = ("center", "bottom_center")


@dataclass(frozen=True)
class LineSpec:
    name: str
    points: tuple[tuple[float, float], tuple[float, float]]
    classes: tuple[str | int, ...] = ()  # labels or class ids; empty: every class


@dataclass(frozen=True)
class ZoneSpec:
    name: str
    polygon: tuple[tuple[float, float], ...]
    classes: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class AnalyticsConfig:
    lines: tuple[LineSpec, ...] = ()
    zones: tuple[ZoneSpec, ...] = ()
    anchor: str = "center"
    margin: float = 5.0  # pixels: the hysteresis band on both sides of a line or a zone's edge

    def __bool__(self) -> bool:
        return bool(self.lines or self.zones)


@dataclass
class Counts:
    """Totals of every :class:`Analytics` of a run (all sources); keys exist from the start."""

    lines: dict[str, dict[str, int]] = field(default_factory=dict)  # line -> {"in": n, "out": n}
    zones: dict[str, dict[str, int]] = field(default_factory=dict)  # zone -> {"entered", "left", "occupancy"}

    @classmethod
    def for_config(cls, config: AnalyticsConfig) -> Counts:
        return cls(
            {ln.name: {"in": 0, "out": 0} for ln in config.lines},
            {z.name: {"entered": 0, "left": 0, "occupancy": 0} for z in config.zones},
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "lines": {k: dict(v) for k, v in self.lines.items()},
            "zones": {k: dict(v) for k, v in self.zones.items()},
        }


def check_classes(config: AnalyticsConfig, labels: Sequence[str]) -> None:
    """ConfigError for a line's or zone's ``classes`` entry that can never match the model's ``labels``
    (a typo such as ``persn`` would count nothing, silently). Without labels the model's classes are named by
    their ids (``"0"``), so nothing can be checked."""
    if not labels:
        return
    from difflib import get_close_matches

    from edge.errors import ConfigError

    known = set(labels)
    groups: tuple[tuple[str, Sequence[LineSpec | ZoneSpec]], ...] = (("lines", config.lines), ("zones", config.zones))
    for kind, specs in groups:
        for i, spec in enumerate(specs):
            for c in spec.classes:
                if isinstance(c, int) and not 0 <= c < len(labels):
                    raise ConfigError(
                        f"analytics.{kind}[{i}] ({spec.name}).classes: class id {c} is not one of the model's "
                        f"{len(labels)} classes (0..{len(labels) - 1})"
                    )
                if isinstance(c, str) and c not in known:
                    close = get_close_matches(c, labels, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    shown = ", ".join(labels[:8]) + (f", ... ({len(labels)} in all)" if len(labels) > 8 else "")
                    raise ConfigError(
                        f"analytics.{kind}[{i}] ({spec.name}).classes: {c!r} is not a label of the model; {hint}"
                        f"its labels: {shown}"
                    )


def anchors(boxes: np.ndarray, anchor: str) -> np.ndarray:
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    y = boxes[:, 3] if anchor == "bottom_center" else (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([x, y], axis=1)


def _class_mask(dets: Detections, specs: Sequence[LineSpec | ZoneSpec]) -> np.ndarray:
    """[N, S] True where detection n's class is one spec s counts."""
    mask = np.ones((len(dets), len(specs)), bool)
    for s, spec in enumerate(specs):
        if spec.classes:
            names = {c for c in spec.classes if isinstance(c, str)}
            ids = {c for c in spec.classes if isinstance(c, int)}
            mask[:, s] = [int(c) in ids or dets.label(int(c)) in names for c in dets.class_ids]
    return mask


class Polygon:
    """A zone's polygon with its edges precomputed, for point tests on every frame."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        a = np.asarray(points, np.float64)
        b = np.roll(a, -1, axis=0)
        self.ax, self.ay = a[:, 0], a[:, 1]
        self.ex, self.ey = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        self.by = b[:, 1]
        self.length2 = np.maximum(self.ex * self.ex + self.ey * self.ey, 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.slope = self.ex / self.ey  # x change per y along each edge (inf for horizontal edges: unused)

    def inside(self, points: np.ndarray) -> np.ndarray:
        """[N] inside (even-odd rule) for points [N, 2]."""
        px, py = points[:, 0:1], points[:, 1:2]
        straddles = (self.ay > py) != (self.by > py)
        with np.errstate(invalid="ignore"):
            left_of_edge = px < self.ax + (py - self.ay) * self.slope
        return (np.count_nonzero(straddles & left_of_edge, axis=1) % 2) == 1

    def distance(self, points: np.ndarray) -> np.ndarray:
        """[N] distance from points [N, 2] to the nearest edge."""
        px, py = points[:, 0:1] - self.ax, points[:, 1:2] - self.ay
        t = np.clip((px * self.ex + py * self.ey) / self.length2, 0.0, 1.0)
        return np.hypot(px - t * self.ex, py - t * self.ey).min(axis=1)


def polygon_inside(points: np.ndarray, polygon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For points [N, 2]: inside the polygon [K, 2] (even-odd rule), and the distance to its edges."""
    poly = Polygon([(float(x), float(y)) for x, y in polygon])
    return poly.inside(points), poly.distance(points)


class Analytics:
    """The lines and zones of one source; ``update`` per frame returns that frame's events."""

    def __init__(self, config: AnalyticsConfig, counts: Counts | None = None) -> None:
        self.config = config
        self.counts = counts if counts is not None else Counts.for_config(config)
        lines = config.lines
        self._p1 = np.array([ln.points[0] for ln in lines], np.float64).reshape(-1, 2)
        d = np.array([ln.points[1] for ln in lines], np.float64).reshape(-1, 2) - self._p1
        self._d = d
        self._len = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
        self._polygons = [Polygon(z.polygon) for z in config.zones]
        self._slots: dict[int, int] = {}  # track id -> row of the state arrays
        self._free: list[int] = []
        self._side = np.zeros((0, len(lines)), np.int8)  # -1 left, +1 right, 0 not known yet
        self._inside = np.zeros((0, len(config.zones)), bool)
        self._since = np.zeros((0, len(config.zones)))  # capture time of the entry
        self._class: dict[int, int] = {}  # track id -> class id (for zone_left of a dropped track)
        self._labels: Sequence[str] = ()

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        rows = np.empty(len(ids), np.int64)
        for i, tid in enumerate(ids.tolist()):
            row = self._slots.get(tid)
            if row is None:
                row = self._free.pop() if self._free else self._grow()
                self._slots[tid] = row
                self._side[row] = 0
                self._inside[row] = False
            rows[i] = row
        return rows

    def _grow(self) -> int:
        n = len(self._side)
        size = max(16, 2 * n)
        self._side = np.concatenate([self._side, np.zeros((size - n, self._side.shape[1]), np.int8)])
        self._inside = np.concatenate([self._inside, np.zeros((size - n, self._inside.shape[1]), bool)])
        self._since = np.concatenate([self._since, np.zeros((size - n, self._since.shape[1]))])
        self._free.extend(range(size - 1, n, -1))
        return n

    def update(self, dets: Detections, when: float, alive: set[int] | None = None) -> list[dict[str, Any]]:
        """Events of one frame: ``dets`` carry ``track_ids`` (untracked ones are ignored), ``when`` is the
        frame's capture time, ``alive`` the tracker's live ids (tracks not in it are forgotten)."""
        events: list[dict[str, Any]] = []
        if dets.track_ids is not None and len(dets):
            tracked = dets[dets.track_ids >= 0]
            if len(tracked):
                ids = tracked.track_ids
                assert ids is not None
                rows = self._rows(ids)
                points = anchors(np.asarray(tracked.boxes, np.float64), self.config.anchor)
                self._class.update(zip(ids.tolist(), tracked.class_ids.tolist()))
                self._labels = tracked.labels
                if self.config.lines:
                    self._lines(tracked, ids, rows, points, events)
                if self.config.zones:
                    self._zones(tracked, ids, rows, points, when, events)
        if alive is not None:
            self._forget(alive, when, events)
        return events

    def _lines(
        self,
        dets: Detections,
        ids: np.ndarray,
        rows: np.ndarray,
        points: np.ndarray,
        events: list[dict[str, Any]],
    ) -> None:
        rel = points[:, None, :] - self._p1[None, :, :]  # [N, L, 2]
        d = self._d[None, :, :]
        signed = (d[..., 0] * rel[..., 1] - d[..., 1] * rel[..., 0]) / self._len  # > 0: right of the line
        along = (rel[..., 0] * d[..., 0] + rel[..., 1] * d[..., 1]) / (self._len**2)
        margin = self.config.margin
        side = np.where(signed > margin, 1, np.where(signed < -margin, -1, 0)).astype(np.int8)
        before = self._side[rows]
        crossed = (side != 0) & (before != 0) & (side != before) & (along >= 0) & (along <= 1)
        crossed &= _class_mask(dets, self.config.lines)
        self._side[rows] = np.where(side != 0, side, before)
        for n, k in zip(*np.nonzero(crossed)):
            line = self.config.lines[k].name
            direction = "in" if side[n, k] > 0 else "out"
            self.counts.lines[line][direction] += 1
            events.append(
                {
                    "type": "line_crossed",
                    "line": line,
                    "track_id": int(ids[n]),
                    "label": dets.label(int(dets.class_ids[n])),
                    "direction": direction,
                }
            )

    def _zones(
        self,
        dets: Detections,
        ids: np.ndarray,
        rows: np.ndarray,
        points: np.ndarray,
        when: float,
        events: list[dict[str, Any]],
    ) -> None:
        margin = self.config.margin
        wanted = _class_mask(dets, self.config.zones)
        for z, polygon in enumerate(self._polygons):
            inside = polygon.inside(points)
            was = self._inside[rows, z]
            # only the points whose state could change need their distance to the edge (few, most frames)
            maybe = np.flatnonzero((inside & ~was & wanted[:, z]) | (~inside & was))
            if not len(maybe):
                continue
            far = polygon.distance(points[maybe]) > margin
            name = self.config.zones[z].name
            zc = self.counts.zones[name]
            for n in maybe[far]:
                label = dets.label(int(dets.class_ids[n]))
                if inside[n]:
                    self._inside[rows[n], z] = True
                    self._since[rows[n], z] = when
                    zc["entered"] += 1
                    zc["occupancy"] += 1
                    events.append({"type": "zone_entered", "zone": name, "track_id": int(ids[n]), "label": label})
                else:
                    events.append(self._leave(rows[n], z, int(ids[n]), label, when))

    def _leave(self, row: int, z: int, tid: int, label: str, when: float, lost: bool = False) -> dict[str, Any]:
        name = self.config.zones[z].name
        zc = self.counts.zones[name]
        self._inside[row, z] = False
        zc["left"] += 1
        zc["occupancy"] -= 1
        event: dict[str, Any] = {
            "type": "zone_left",
            "zone": name,
            "track_id": tid,
            "label": label,
            "dwell_s": round(max(0.0, when - float(self._since[row, z])), 3),
        }
        if lost:
            event["lost"] = True
        return event

    def _forget(self, alive: set[int], when: float, events: list[dict[str, Any]]) -> None:
        gone = [tid for tid in self._slots if tid not in alive]
        for tid in gone:
            row = self._slots.pop(tid)
            cid = self._class.pop(tid, -1)
            label = self._labels[cid] if 0 <= cid < len(self._labels) else str(cid)
            for z in np.flatnonzero(self._inside[row]):
                events.append(self._leave(row, int(z), tid, label, when, lost=True))
            self._free.append(row)
