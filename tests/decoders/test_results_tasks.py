"""Detections' task fields (masks, keypoint scores, rotated boxes): checked shapes, slicing, JSON."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.results import Detections, result_json


def _dets(n: int = 2, **extra: np.ndarray) -> Detections:
    boxes = np.array([[0, 0, 4, 4], [2, 2, 6, 6]], np.float32)[:n]
    return Detections(boxes, np.array([0.9, 0.8], np.float32)[:n], np.array([0, 1], np.int64)[:n], **extra)


def test_shapes_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"masks: expected \[N, H, W\]"):
        _dets(masks=np.zeros((3, 5, 5), bool))
    with pytest.raises(ConfigError, match=r"rotated: expected \[N, 5\]"):
        _dets(rotated=np.zeros((2, 4), np.float32))
    with pytest.raises(ConfigError, match=r"keypoint_scores: expected \[N, K\] like keypoints"):
        _dets(keypoints=np.zeros((2, 3, 2), np.float32), keypoint_scores=np.zeros((2, 4), np.float32))
    with pytest.raises(ConfigError, match="keypoint_scores"):
        _dets(keypoint_scores=np.zeros((2, 3), np.float32))  # scores without keypoints


def test_slicing_keeps_every_field_in_step() -> None:
    masks = np.zeros((2, 8, 8), bool)
    masks[1, 3:5, 3:5] = True
    d = _dets(
        masks=masks,
        keypoints=np.arange(12, dtype=np.float32).reshape(2, 3, 2),
        keypoint_scores=np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32),
        rotated=np.array([[2, 2, 4, 4, 0], [4, 4, 4, 4, 0.5]], np.float32),
        track_ids=np.array([7, 8]),
    )
    second = d[d.scores < 0.85]
    assert len(second) == 1 and second.masks is not None and second.masks[0].sum() == 4
    assert second.keypoint_scores is not None and second.keypoint_scores[0].tolist() == pytest.approx([0.4, 0.5, 0.6])
    assert second.rotated is not None and second.rotated[0, 4] == pytest.approx(0.5)
    assert second.track_ids is not None and second.track_ids.tolist() == [8]
    item = result_json(second)["detections"][0]
    assert item["keypoint_scores"] == [0.4, 0.5, 0.6] and item["track_id"] == 8
    assert item["rotated_box"] == [4.0, 4.0, 4.0, 4.0, 0.5] and len(item["polygon"]) == 4
    # column-major runs, zeros first: 3 columns of 8 zeros + 3 zeros, 2 ones, 3+3 zeros, 2 ones, 3 + 3x8 zeros
    assert item["mask"] == {"size": [8, 8], "counts": [27, 2, 6, 2, 27]}


def test_axis_aligned_polygons() -> None:
    corners = _dets(1).polygons()
    assert corners.shape == (1, 4, 2) and corners[0].tolist() == [[0, 0], [4, 0], [4, 4], [0, 4]]
