"""Line and zone analytics against hand-worked scenes (positions chosen so the answer is known)."""

from __future__ import annotations

import numpy as np

from edge.events.analytics import Analytics, AnalyticsConfig, LineSpec, ZoneSpec, polygon_inside
from edge.results import Detections

LABELS = ("person", "car")
DOOR = LineSpec("door", ((320.0, 0.0), (320.0, 480.0)))


def at(*objs: tuple[int, float, float, int]) -> Detections:
    """Detections of (track id, centre x, centre y, class id): 20x20 boxes."""
    boxes = np.array([[x - 10, y - 10, x + 10, y + 10] for _, x, y, _ in objs], np.float32).reshape(-1, 4)
    return Detections(
        boxes,
        np.full(len(objs), 0.9, np.float32),
        np.array([o[3] for o in objs], np.int64),
        LABELS,
        None,
        np.array([o[0] for o in objs], np.int64),
    )


def walk(a: Analytics, xs: list[float], y: float = 240.0, tid: int = 7, cls: int = 0) -> list[dict]:
    events = []
    for i, x in enumerate(xs):
        events += a.update(at((tid, x, y, cls)), float(i))
    return events


def test_direction_follows_the_documented_rule() -> None:
    """Door drawn top to bottom: its left is the image's right half, so right-to-left is "in"."""
    a = Analytics(AnalyticsConfig(lines=(DOOR,)))
    events = walk(a, [400, 360, 330, 300, 260, 300, 340, 380])
    assert events == [
        {"type": "line_crossed", "line": "door", "track_id": 7, "label": "person", "direction": "in"},
        {"type": "line_crossed", "line": "door", "track_id": 7, "label": "person", "direction": "out"},
    ]
    assert a.counts.lines == {"door": {"in": 1, "out": 1}}


def test_a_line_drawn_left_to_right_counts_moving_down_as_in() -> None:
    a = Analytics(AnalyticsConfig(lines=(LineSpec("road", ((0.0, 240.0), (640.0, 240.0))),)))
    events = []
    for i, y in enumerate([200, 220, 250, 280]):
        events += a.update(at((3, 100, y, 1)), float(i))
    assert [(e["direction"], e["label"]) for e in events] == [("in", "car")]


def test_jitter_on_the_line_is_counted_once() -> None:
    a = Analytics(AnalyticsConfig(lines=(DOOR,), margin=5))
    near = [323, 317, 322, 318, 324, 316, 321, 319] * 3  # +-4 px around x=320, inside the 5 px band
    events = walk(a, [400, 360, *near, 280, 240])
    assert [e["direction"] for e in events] == ["in"]


def test_passing_beside_the_segment_is_not_a_crossing() -> None:
    short = LineSpec("gate", ((320.0, 0.0), (320.0, 200.0)))
    a = Analytics(AnalyticsConfig(lines=(short,)))
    assert walk(a, [400, 330, 300, 240], y=400) == []
    assert [e["direction"] for e in walk(a, [400, 330, 300, 240], y=100, tid=8)] == ["in"]


def test_class_filter_and_untracked_detections() -> None:
    people = LineSpec("door", DOOR.points, ("person",))
    a = Analytics(AnalyticsConfig(lines=(people,)))
    assert walk(a, [400, 300, 240], cls=1) == [], "cars do not count on a person line"
    assert len(walk(a, [400, 300, 240], tid=9, cls=0)) == 1
    untracked = at((-1, 400, 240, 0))
    assert a.update(untracked, 9.0) == []


def test_zone_entry_exit_dwell_and_occupancy() -> None:
    bay = ZoneSpec("bay", ((0.0, 300.0), (640.0, 300.0), (640.0, 480.0), (0.0, 480.0)))
    a = Analytics(AnalyticsConfig(zones=(bay,), margin=5))
    assert a.update(at((1, 100, 250, 1)), 10.0) == []
    assert a.update(at((1, 100, 302, 1)), 11.0) == [], "2 px inside is within the margin"
    assert a.update(at((1, 100, 350, 1)), 12.0) == [
        {"type": "zone_entered", "zone": "bay", "track_id": 1, "label": "car"}
    ]
    assert a.counts.zones["bay"] == {"entered": 1, "left": 0, "occupancy": 1}
    assert a.update(at((1, 100, 298, 1)), 20.0) == [], "2 px outside is within the margin"
    left = a.update(at((1, 100, 250, 1)), 24.5)
    assert left == [{"type": "zone_left", "zone": "bay", "track_id": 1, "label": "car", "dwell_s": 12.5}]
    assert a.counts.zones["bay"] == {"entered": 1, "left": 1, "occupancy": 0}


def test_a_track_dropped_inside_a_zone_leaves_it() -> None:
    bay = ZoneSpec("bay", ((0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)))
    a = Analytics(AnalyticsConfig(zones=(bay,)))
    assert a.update(at((4, 50, 50, 0)), 1.0, alive={4})[0]["type"] == "zone_entered"
    assert a.update(at(), 2.0, alive={4}) == [], "lost but still alive in the tracker"
    gone = a.update(at(), 3.0, alive=set())
    assert gone == [
        {"type": "zone_left", "zone": "bay", "track_id": 4, "label": "person", "dwell_s": 2.0, "lost": True}
    ]
    assert a.counts.zones["bay"]["occupancy"] == 0


def test_polygon_inside_against_opencv() -> None:
    import cv2

    polygon = np.array([[10, 10], [200, 30], [150, 180], [60, 120], [20, 160]], np.float64)
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 220, (400, 2))
    inside, dist = polygon_inside(points, polygon)
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    ref = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points])
    on_edge = np.abs(ref) < 1e-6
    assert (inside[~on_edge] == (ref[~on_edge] > 0)).all()
    np.testing.assert_allclose(dist, np.abs(ref), atol=1e-3)


def test_a_crossing_hidden_by_an_occlusion_still_counts() -> None:
    """The track was last seen left of the door and comes back right of it (the tracker kept its id)."""
    a = Analytics(AnalyticsConfig(lines=(DOOR,)))
    assert a.update(at((5, 420, 240, 0)), 0.0, alive={5}) == []
    assert a.update(at(), 1.0, alive={5}) == [], "lost for a while, still alive"
    events = a.update(at((5, 200, 240, 0)), 2.0, alive={5})
    assert [(e["direction"], e["track_id"]) for e in events] == [("in", 5)]
