"""edge.decoders.nms: hand-checked tables, then agreement with OpenCV's NMS on random boxes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.decoders import nms, nonmax
from edge.errors import ConfigError

A = [0, 0, 10, 10]
A_SHIFT = [1, 0, 11, 10]  # IoU with A = 90 / 110 = 0.818
A_HALF = [5, 0, 15, 10]  # IoU with A = 50 / 150 = 0.333
FAR = [100, 100, 110, 110]


@pytest.mark.parametrize(
    ("boxes", "scores", "classes", "iou", "kwargs", "expected"),
    [
        # class-aware: the overlapping box of another class survives; agnostic: it does not
        ([A, A_SHIFT, FAR], [0.9, 0.8, 0.7], [0, 1, 0], 0.5, {}, [0, 1, 2]),
        ([A, A_SHIFT, FAR], [0.9, 0.8, 0.7], [0, 1, 0], 0.5, {"agnostic": True}, [0, 2]),
        ([A, A_SHIFT, FAR], [0.9, 0.8, 0.7], [0, 0, 0], 0.5, {}, [0, 2]),
        # the best box wins whatever its position; output is best first
        ([A, A_SHIFT, FAR], [0.1, 0.8, 0.7], [0, 0, 0], 0.5, {}, [1, 2]),
        # IoU 1/3: kept at threshold 0.5, dropped at 0.3; at exactly 1/3 kept (only IoU > threshold suppresses)
        ([A, A_HALF], [0.9, 0.8], [0, 0], 0.5, {}, [0, 1]),
        ([A, A_HALF], [0.9, 0.8], [0, 0], 0.3, {}, [0]),
        ([[0, 0, 2, 1], [1, 0, 3, 1]], [0.9, 0.8], [0, 0], 1 / 3, {}, [0, 1]),
        # chain: 0 suppresses 1, so 2 (overlapping only 1) survives
        ([A, A_HALF, [10, 0, 20, 10]], [0.9, 0.8, 0.7], [0, 0, 0], 0.3, {}, [0, 2]),
        # ties keep input order, in the output and in who suppresses whom
        ([A_SHIFT, A, FAR], [0.5, 0.5, 0.5], [0, 0, 0], 0.5, {}, [0, 2]),
        ([FAR, A, A_SHIFT], [0.5, 0.5, 0.5], [3, 1, 1], 0.5, {}, [0, 1]),
        ([FAR, A, A_SHIFT], [0.5, 0.5, 0.5], [1, 3, 3], 0.5, {}, [0, 1]),
        # max_detections keeps the best
        ([A, FAR, A_HALF], [0.2, 0.9, 0.5], [0, 1, 2], 0.5, {"max_detections": 2}, [1, 2]),
        # identical boxes, empty boxes (zero area never suppresses), class_ids None = agnostic
        ([A, A, A], [0.3, 0.2, 0.1], [0, 0, 0], 0.9, {}, [0]),
        ([[5, 5, 5, 5], [5, 5, 5, 5]], [0.9, 0.8], [0, 0], 0.5, {}, [0, 1]),
        ([A, A_SHIFT], [0.9, 0.8], None, 0.5, {}, [0]),
        (np.zeros((0, 4)), [], [], 0.5, {}, []),
        (np.zeros((0, 4)), [], None, 0.5, {"agnostic": True}, []),
        # bad shapes
        ([[0, 0, 1]], [0.5], [0], 0.5, {}, ConfigError),
        ([A], [0.5, 0.4], [0], 0.5, {}, ConfigError),
        ([A, A], [0.5, 0.4], [0], 0.5, {}, ConfigError),
    ],
)
def test_table(
    boxes: object, scores: object, classes: object, iou: float, kwargs: dict[str, object], expected: object
) -> None:
    args = (
        np.asarray(boxes, np.float32),
        np.asarray(scores, np.float32),
        classes if classes is None else np.asarray(classes),
    )
    if isinstance(expected, type):
        with pytest.raises(expected, match="nms: expected"):
            nms(*args, iou, **kwargs)  # type: ignore[arg-type]
        return
    kept = nms(*args, iou, **kwargs)  # type: ignore[arg-type]
    assert kept.dtype == np.int64
    assert kept.tolist() == expected


def random_boxes(rng: np.random.Generator, n: int, classes: int, size: float) -> tuple[np.ndarray, ...]:
    """Uniformly scattered boxes (``size`` > 0) or, for ``size`` < 0, boxes jittered around a few objects
    (what a detector emits: dense clusters, which the greedy steps thin out before the matrix pass)."""
    if size > 0:
        xy = rng.uniform(0, 640, (n, 2))
        wh = rng.uniform(2, size, (n, 2))
    else:
        obj = rng.integers(0, 12, n)
        centres, sizes = rng.uniform(50, 590, (12, 2)), rng.uniform(20, -size, (12, 2))
        wh = sizes[obj] * rng.uniform(0.8, 1.2, (n, 2))
        xy = centres[obj] + rng.normal(0, 5, (n, 2)) - wh / 2
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(0.01, 1.0, n).astype(np.float32)
    if n > 4:
        scores[: n // 4] = scores[n // 4 : 2 * (n // 4)]  # plenty of ties
    return boxes, scores, rng.integers(0, classes, n)


def xywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


@pytest.mark.parametrize(
    ("n", "classes", "size", "iou"),
    [
        (1, 1, 50, 0.5),
        (50, 3, 80, 0.5),
        (1000, 80, 60, 0.45),
        (1000, 80, 300, 0.45),
        (3000, 2, 200, 0.6),
        (5000, 80, 100, 0.3),
        (2000, 3, -150, 0.45),
        (3000, 1, -200, 0.7),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_opencv(n: int, classes: int, size: float, iou: float, seed: int) -> None:
    boxes, scores, class_ids = random_boxes(np.random.default_rng(seed), n, classes, size)
    want = np.asarray(cv2.dnn.NMSBoxesBatched(xywh(boxes), scores, class_ids, 0.0, iou), np.int64).ravel()
    got = nms(boxes, scores, class_ids, iou)
    assert got.tolist() == want.tolist()  # same kept set, in the same (best first) order
    want = np.asarray(cv2.dnn.NMSBoxes(xywh(boxes), scores, 0.0, iou), np.int64).ravel()
    assert nms(boxes, scores, class_ids, iou, agnostic=True).tolist() == want.tolist()


def test_chain_through_blocks_agrees_with_opencv() -> None:
    """A long chain (each box overlaps only its neighbours) needs one greedy round per link: exact anyway,
    through the block-by-block path for groups larger than BLOCK."""
    n = nonmax.BLOCK * 2 + 37
    x = np.arange(n, dtype=np.float32) * 2
    boxes = np.stack([x, 0 * x, x + 10, 0 * x + 10], axis=1)
    scores = np.linspace(1.0, 0.1, n).astype(np.float32)
    want = np.asarray(cv2.dnn.NMSBoxes(xywh(boxes), scores, 0.0, 0.5), np.int64).ravel()
    got = nms(boxes, scores, None, 0.5)
    assert got.tolist() == want.tolist()
    assert got.tolist() == list(range(0, n, 2))  # IoU(i, i+1) = 80/120 > 0.5, IoU(i, i+2) = 60/140 < 0.5


@pytest.mark.parametrize("size", [30, -120])
def test_tiny_limits_same_result(monkeypatch: pytest.MonkeyPatch, size: float) -> None:
    """With tiny matrix/block limits every path runs (chunked buckets, block-by-block groups, short greedy
    blocks, multi-box steps): the result does not depend on them."""
    monkeypatch.setattr(nonmax, "MATRIX_BUDGET", 4096)
    monkeypatch.setattr(nonmax, "BLOCK", 100)
    monkeypatch.setattr(nonmax, "STEP", 16)
    boxes, scores, class_ids = random_boxes(np.random.default_rng(3), 2000, 40, size)
    want = np.asarray(cv2.dnn.NMSBoxesBatched(xywh(boxes), scores, class_ids, 0.0, 0.5), np.int64).ravel()
    assert nms(boxes, scores, class_ids, 0.5).tolist() == want.tolist()
    want = np.asarray(cv2.dnn.NMSBoxes(xywh(boxes), scores, 0.0, 0.5), np.int64).ravel()
    assert nms(boxes, scores, class_ids, 0.5, agnostic=True).tolist() == want.tolist()
