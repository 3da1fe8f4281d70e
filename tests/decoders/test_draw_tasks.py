"""edge.draw for the segment, pose and obb results: masks tinted, rotated boxes as polygons, skeletons."""

from __future__ import annotations

import numpy as np

from edge.draw import KEYPOINT_MIN_SCORE, MASK_ALPHA, PALETTE, draw
from edge.results import Detections


def _canvas() -> np.ndarray:
    return np.full((200, 300, 3), 100, np.uint8)


def _one(**extra: np.ndarray) -> Detections:
    return Detections(
        np.array([[50, 40, 250, 180]], np.float32), np.array([0.9], np.float32), np.array([2], np.int64), **extra
    )


def test_mask_is_tinted_in_the_class_colour_and_nothing_else() -> None:
    mask = np.zeros((1, 200, 300), bool)
    mask[0, 80:120, 100:160] = True
    out = draw(_canvas(), _one(masks=mask))
    want = np.round(100 * (1 - MASK_ALPHA) + np.array(PALETTE[2]) * MASK_ALPHA)
    assert np.abs(out[100, 130].astype(int) - want).max() <= 1  # inside the mask, away from the box edges
    assert (out[130:170, 60:240] == 100).all()  # inside the box, outside the mask: untouched


def test_rotated_box_is_drawn_as_its_polygon() -> None:
    # a 100 x 40 box centred at (150, 100), turned 90 degrees: it spans x 130..170, y 50..150
    rotated = np.array([[150, 100, 100, 40, np.pi / 2]], np.float32)
    dets = Detections(
        np.array([[130, 50, 170, 150]], np.float32),
        np.array([0.9], np.float32),
        np.array([0], np.int64),
        rotated=rotated,
    )
    changed = np.abs(draw(_canvas(), dets).astype(int) - 100).sum(axis=2) > 0
    assert changed[100, 130] and changed[100, 170] and changed[50, 150] and changed[150, 150]
    assert not changed[100, 150] and not changed[100, 120]  # the inside and the outside


def test_pose_skeleton_and_only_visible_keypoints() -> None:
    kp = np.zeros((1, 17, 2), np.float32)
    kp[0, :, 0] = np.linspace(60, 240, 17)
    kp[0, :, 1] = 110
    scores = np.full((1, 17), 0.9, np.float32)
    scores[0, 16] = KEYPOINT_MIN_SCORE  # not drawn
    kp[0, 16] = (150, 60)
    kp[0, 5], kp[0, 6] = (100, 160), (200, 160)  # the shoulders: the 5-6 limb is a horizontal line at y 160
    changed = np.abs(draw(_canvas(), _one(keypoints=kp, keypoint_scores=scores)).astype(int) - 100).sum(axis=2) > 0
    assert changed[160, 150]  # the shoulder-to-shoulder limb
    assert not changed[60, 150]  # the invisible keypoint
