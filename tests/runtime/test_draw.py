"""edge.draw on real photos: boxes, keypoints and class labels land where they should, nothing else changes."""

from __future__ import annotations

import numpy as np

from edge.draw import PALETTE, draw
from edge.results import Classifications, Detections, RawOutputs
from tests.runtime.bundles import photo


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 0


def test_detections_box_label_and_keypoints() -> None:
    image = photo("astronaut")
    dets = Detections(
        np.array([[180, 60, 270, 175]], np.float32),
        np.array([0.97], np.float32),
        np.array([1], np.int64),
        labels=("cat", "face"),
        keypoints=np.array([[[205, 100], [247, 103], [224, 129], [203, 138], [244, 140]]], np.float32),
    )
    out = draw(image, dets)
    assert out is not image and np.array_equal(image, photo("astronaut"))  # the input is untouched
    changed = _changed(out, image)
    assert changed[100:170, 180].all() and changed[100:170, 270].all()  # left and right edges
    assert np.abs(out[120, 180].astype(int) - PALETTE[1]).max() <= 8  # class 1's colour (anti-aliased line)
    assert changed[100, 205] and changed[140, 244]  # keypoints
    assert changed[40:58, 182:240].any()  # the "face 0.97" tag above the box
    assert not changed[300:, :].any() and not changed[:, 300:].any()


def test_classes_top_left_and_inplace() -> None:
    image = photo("chelsea").copy()
    before = image.copy()
    classes = Classifications(np.array([3, 7]), np.array([0.8, 0.1], np.float32), labels=[str(i) for i in range(10)])
    out = draw(image, classes, inplace=True)
    assert out is image
    changed = _changed(out, before)
    assert changed[:40, :60].any() and not changed[100:, 150:].any()


def test_grayscale_and_raw_outputs() -> None:
    gray = photo("camera")
    out = draw(gray, RawOutputs({"y": np.zeros(3)}))
    assert out.shape == (*gray.shape, 3)
    assert np.array_equal(out[:, :, 0], gray) and np.array_equal(out[:, :, 2], gray)
    assert len(draw(gray, Detections.empty())) == gray.shape[0]
