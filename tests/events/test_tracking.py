"""Trackers on synthetic scenes whose true identities are known (the scene generator is the reference)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.events.tracking import Tracker, TrackerConfig, iou_matrix
from edge.results import Detections


def box(cx: float, cy: float, w: float = 40, h: float = 60) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def frame(*objs: tuple[list[float], float, int]) -> Detections:
    if not objs:
        return Detections.empty(("person", "car"))
    boxes = np.array([o[0] for o in objs], np.float32)
    return Detections(
        boxes, np.array([o[1] for o in objs], np.float32), np.array([o[2] for o in objs]), ("person", "car")
    )


def test_iou_matrix_matches_hand_worked_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    # [0,0,10,10] vs [5,0,15,10]: overlap 5x10=50, union 150 -> 1/3; vs itself 1; [0,0,2,2] inside: 4/100
    expected = np.array([[1 / 3, 0, 1], [0, 0, 0.04]])
    np.testing.assert_allclose(iou_matrix(a, b), expected, atol=1e-9)


@pytest.mark.parametrize("kind", ["bytetrack", "iou"])
def test_ids_are_confirmed_after_min_hits_and_then_stable(kind: str) -> None:
    t = Tracker(TrackerConfig(kind, min_hits=2))
    ids = [t.update(frame((box(100 + 3 * i, 100), 0.9, 0))).track_ids for i in range(5)]
    assert ids[0] is not None and ids[0].tolist() == [-1], "not confirmed on its first frame"
    assert {int(x[0]) for x in ids[1:]} == {1}


def test_crossing_paths_keep_their_identities_with_bytetrack() -> None:
    """Two people walk towards each other along one row and pass (boxes overlap for several frames)."""
    t = Tracker(TrackerConfig("bytetrack"))
    seen: dict[str, set[int]] = {"a": set(), "b": set()}
    for i in range(60):
        a, b = box(100 + 8 * i, 200), box(572 - 8 * i, 206)
        out = t.update(frame((a, 0.9, 0), (b, 0.85, 0))).track_ids
        assert out is not None
        if i >= 1:
            seen["a"].add(int(out[0]))
            seen["b"].add(int(out[1]))
    assert len(seen["a"]) == 1 and len(seen["b"]) == 1 and seen["a"] != seen["b"], seen


def test_a_short_occlusion_keeps_the_id_and_a_long_one_does_not() -> None:
    t = Tracker(TrackerConfig("bytetrack", max_lost=10))
    ids = []
    for i in range(40):
        hidden = 10 <= i < 18 or 25 <= i < 37  # 8 missed frames (kept), then 12 (> max_lost: a new track)
        out = t.update(frame() if hidden else frame((box(50 + 10 * i, 300), 0.9, 0))).track_ids
        assert out is not None
        ids.append(None if hidden else int(out[0]))
    assert set(ids[1:10]) == {1}
    assert set(ids[18:25]) == {1}, "found again after 8 missed frames, where the motion model predicted it"
    assert ids[37] == -1 and set(ids[38:]) == {2}, "after 12 missed frames it is a new track"


def test_low_score_detections_keep_a_track_alive() -> None:
    """ByteTrack's second association: a detection that fades (partly occluded) keeps its id."""
    t = Tracker(TrackerConfig("bytetrack", track_threshold=0.5, low_threshold=0.1))
    out = []
    for i in range(20):
        score = 0.3 if 8 <= i < 14 else 0.9
        ids = t.update(frame((box(100 + 5 * i, 100), score, 0))).track_ids
        assert ids is not None
        out.append(int(ids[0]))
    assert set(out[1:]) == {1}


def test_tracks_are_per_class() -> None:
    t = Tracker(TrackerConfig("bytetrack", min_hits=1))
    first = t.update(frame((box(100, 100), 0.9, 0), (box(101, 100), 0.9, 1))).track_ids
    assert first is not None and sorted(first.tolist()) == [1, 2]
    # the person disappears; a car exactly where the person was never continues the person's track
    second = t.update(frame((box(102, 100), 0.9, 1))).track_ids
    assert second is not None and second.tolist() == [int(first[1])]


def test_ids_are_unique_across_trackers_sharing_a_counter() -> None:
    import itertools

    ids = itertools.count(1)
    a, b = Tracker(TrackerConfig(min_hits=1), ids), Tracker(TrackerConfig(min_hits=1), ids)
    x = a.update(frame((box(10, 10), 0.9, 0))).track_ids
    y = b.update(frame((box(10, 10), 0.9, 0))).track_ids
    assert x is not None and y is not None and x.tolist() == [1] and y.tolist() == [2]


def test_track_ids_appear_in_the_json_of_the_detections() -> None:
    t = Tracker(TrackerConfig(min_hits=2))
    first = t.update(frame((box(100, 100), 0.9, 0))).to_json()
    second = t.update(frame((box(102, 100), 0.9, 0))).to_json()
    assert first[0]["track_id"] is None and second[0]["track_id"] == 1
    assert "track_id" not in frame((box(1, 1), 0.9, 0)).to_json()[0], "untracked results keep their old shape"
