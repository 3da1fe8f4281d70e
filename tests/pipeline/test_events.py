"""Tracking and analytics inside the pipeline, on the demo's clip whose motion is known: the first photo
glides left to right along the top, the second right to left along the bottom, each face crossing x=320 once.

40 frames: about 11 pixels of motion per frame, so consecutive boxes of the smaller face overlap (IoU ~0.5);
the 16-frame clip of the other pipeline tests moves a 39-pixel face 28 pixels a frame, too far for IoU matching.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.events.analytics import AnalyticsConfig, LineSpec, ZoneSpec
from edge.events.stage import EventStage
from edge.events.tracking import TrackerConfig
from edge.observer import FrameResult
from edge.pipeline import Pipeline
from edge.sinks import open_sink
from edge.sources import open_source

# drawn bottom to top: its left is the image's left half, so left-to-right is "in"
MIDDLE = LineSpec("middle", ((320.0, 480.0), (320.0, 0.0)), ("face",))
RIGHT = ZoneSpec("right", ((400.0, 0.0), (640.0, 0.0), (640.0, 480.0), (400.0, 480.0)))


@pytest.fixture(scope="module")
def slow_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edge.cli.demo import make_clip

    return make_clip(tmp_path_factory.mktemp("clips") / "faces40.mp4", 40)


class Frames:
    def __init__(self) -> None:
        self.frames: list[FrameResult] = []

    def on_start(self, stats: Any, control: Any) -> None:
        pass

    def on_frame(self, frame: FrameResult, stats: Any) -> None:
        self.frames.append(frame)

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        pass

    def on_stop(self, stats: Any) -> None:
        pass


def test_faces_get_stable_track_ids_and_cross_the_middle_once(model: Any, slow_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    stage = EventStage(TrackerConfig("bytetrack"), AnalyticsConfig(lines=(MIDDLE,), zones=(RIGHT,)))
    seen = Frames()
    pipe = Pipeline(model, [open_source(f"file://{slow_clip}")], [open_sink(str(out))], observers=[seen], events=stage)
    stats = pipe.run()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 40
    assert [d["track_id"] for d in lines[0]["detections"]] == [None, None], "confirmed on the second frame"
    ids_by_row: dict[str, set[int]] = {"top": set(), "bottom": set()}
    for line in lines[1:]:
        for d in line["detections"]:
            ids_by_row["top" if d["box"][1] < 200 else "bottom"].add(d["track_id"])
    assert len(ids_by_row["top"]) == 1 and len(ids_by_row["bottom"]) == 1
    assert ids_by_row["top"] != ids_by_row["bottom"]
    top, bottom = ids_by_row["top"].pop(), ids_by_row["bottom"].pop()
    crossings = [e for line in lines for e in line["events"] if e["type"] == "line_crossed"]
    assert sorted((e["track_id"], e["direction"]) for e in crossings) == sorted([(top, "in"), (bottom, "out")])
    assert all(e["line"] == "middle" and e["label"] == "face" for e in crossings)
    zone = [(e["type"], e["track_id"]) for line in lines for e in line["events"] if e["type"].startswith("zone")]
    # the top face ends inside the right zone; the bottom face starts in it (entered once confirmed), then leaves
    assert zone.count(("zone_entered", top)) == 1 and ("zone_left", top) not in zone
    assert zone.count(("zone_entered", bottom)) == 1 and zone.count(("zone_left", bottom)) == 1
    assert stats.extra["events"] == {
        "tracker": "bytetrack",
        "tracks": 2,
        "lines": {"middle": {"in": 1, "out": 1}},
        "zones": {"right": {"entered": 2, "left": 1, "occupancy": 1}},
    }
    assert "track" in stats.stage_ms and all("track" in f.timings_ms for f in seen.frames)
    last = seen.frames[-1]
    assert last.analytics is not None and last.analytics.counts["lines"]["middle"] == {"in": 1, "out": 1}


def test_the_overlay_draws_lines_zones_and_track_ids(model: Any, faces_clip: Path) -> None:
    import numpy as np

    from edge.sinks.overlay import annotate

    stage = EventStage(TrackerConfig("iou", min_hits=1), AnalyticsConfig(lines=(MIDDLE,), zones=(RIGHT,)))
    seen = Frames()
    Pipeline(model, [open_source(f"file://{faces_clip}?frames=3")], [], observers=[seen], events=stage).run()
    frame = seen.frames[-1]
    assert frame.image is not None
    plain = FrameResult(frame.frame_id, frame.source, frame.capture_time, frame.result_time, frame.result, frame.image)
    with_events = annotate(frame, 10.0)
    without = annotate(plain, 10.0)
    changed = np.any(with_events != without, axis=2)
    assert changed[240:300, 318:323].any(), "the middle line is drawn"
    assert changed[100:200, 399:402].any(), "the zone's left edge is drawn"
