"""The tracker and analytics sections: read once, typed, unknown keys and bad geometry are one clear error."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import RunConfig
from edge.errors import ConfigError
from edge.events.analytics import AnalyticsConfig, LineSpec, ZoneSpec
from edge.events.tracking import TrackerConfig

BASE: dict[str, Any] = {"model": "m.bundle", "source": "test://"}
DOOR = {"name": "door", "points": [[320, 0], [320, 480]], "classes": ["person"]}
BAY = {"name": "bay", "polygon": [[0, 300], [640, 300], [640, 480], [0, 480]]}


def test_the_issue_example_reads_as_written() -> None:
    cfg = RunConfig.from_dict({**BASE, "tracker": "bytetrack", "analytics": {"lines": [DOOR], "zones": [BAY]}})
    assert cfg.tracker == TrackerConfig("bytetrack")
    assert cfg.analytics == AnalyticsConfig(
        lines=(LineSpec("door", ((320.0, 0.0), (320.0, 480.0)), ("person",)),),
        zones=(ZoneSpec("bay", ((0.0, 300.0), (640.0, 300.0), (640.0, 480.0), (0.0, 480.0))),),
    )


def test_analytics_without_a_tracker_tracks_with_bytetrack_and_none_means_off() -> None:
    assert RunConfig.from_dict({**BASE, "analytics": {"lines": [DOOR]}}).tracker == TrackerConfig("bytetrack")
    assert RunConfig.from_dict({**BASE, "tracker": "none"}).tracker is None
    assert RunConfig.from_dict(BASE).tracker is None and RunConfig.from_dict(BASE).analytics is None
    tuned = RunConfig.from_dict({**BASE, "tracker": {"type": "iou", "min_iou": 0.4, "max_lost": 5, "min_hits": 1}})
    assert tuned.tracker == TrackerConfig("iou", min_iou=0.4, max_lost=5, min_hits=1)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tracker": "sort"}, "tracker: 'sort' is not one of bytetrack, iou, none"),
        ({"tracker": {"type": "bytetrack", "buffer": 3}}, "tracker.buffer: unknown key"),
        ({"tracker": {"low_threshold": 0.6}}, "tracker.low_threshold: must be <= track_threshold (0.5), got 0.6"),
        ({"tracker": "none", "analytics": {"lines": [DOOR]}}, "tracker: analytics needs track ids"),
        ({"analytics": {}}, "analytics: give at least one line or zone"),
        ({"analytics": {"lines": [{**DOOR, "colour": "red"}]}}, "analytics.lines[0].colour: unknown key"),
        ({"analytics": {"lines": [{**DOOR, "points": [[1, 2]]}]}}, "analytics.lines[0].points: expected two points"),
        ({"analytics": {"lines": [{**DOOR, "points": [[1, 2], [1, 2]]}]}}, "the two points are the same"),
        ({"analytics": {"lines": [{**DOOR, "points": [[1, "a"], [3, 4]]}]}}, "analytics.lines[0].points[0]: expected"),
        ({"analytics": {"lines": [DOOR, DOOR]}}, "analytics.lines[1].name: 'door' is used twice"),
        ({"analytics": {"zones": [{**BAY, "polygon": [[0, 0], [1, 1]]}]}}, "a polygon needs at least 3 points"),
        ({"analytics": {"zones": [{**BAY, "classes": [True]}]}}, "analytics.zones[0].classes[0]: expected a label"),
        ({"analytics": {"lines": [DOOR], "anchor": "feet"}}, "analytics.anchor: 'feet' is not one of"),
        ({"mqtt": {"queue_max": 0}}, "mqtt.queue_max: must be >= 1"),
        ({"sinks": ["mqtt://u:secret@broker/t"]}, "sinks[0]: mqtt://***@broker/t: credentials do not belong"),
        ({"sinks": ["jsonl://-", "mqtt://broker/t"]}, "sinks[1]: mqtt://broker/t publishes frames with analytics"),
    ],
)
def test_bad_sections_are_one_error_naming_the_key(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({**BASE, **extra})
    assert message in str(err.value)
    assert "secret" not in str(err.value)


def test_mqtt_detections_need_no_analytics() -> None:
    cfg = RunConfig.from_dict({**BASE, "sinks": ["mqtt://broker/t?publish=detections"], "tracker": "iou"})
    assert cfg.sinks == ["mqtt://broker/t?publish=detections"] and cfg.analytics is None
