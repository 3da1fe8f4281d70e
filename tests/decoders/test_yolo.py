"""YOLO v5/v8/v10 decoders on constructed heads, with hand-checked boxes in original (letterboxed) pixels.

Boxes used (network pixels, cx, cy, w, h) and where they land in the 1280x720 original (see conftest.LETTERBOX):
  P: (320, 320, 100, 50) -> xyxy (270, 295, 370, 345) -> original (540, 310, 740, 410)
  Q: (100, 200, 40, 40)  -> xyxy (80, 180, 120, 220)  -> original (160, 80, 240, 160)
  P2: P moved 2 px right (IoU with P = 98*50 / (102*50) = 0.96)   -> original (544, 310, 744, 410)
  E: (20, 150, 60, 40) partly in the padding -> xyxy (-10, 130, 50, 170) -> original clipped (0, 0, 100, 60)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.decoders import decode
from edge.errors import ConfigError
from tests.decoders.conftest import IDENTITY, LETTERBOX, check_case, close, rows, spec

P, Q, P2, E = (320, 320, 100, 50), (100, 200, 40, 40), (322, 320, 100, 50), (20, 150, 60, 40)
P_OUT, Q_OUT, P2_OUT, E_OUT = [540, 310, 740, 410], [160, 80, 240, 160], [544, 310, 744, 410], [0, 0, 100, 60]


def v8(
    dets: list[tuple[tuple[int, ...], int, float]], nc: int = 3, n: int = 50, transposed: bool = False
) -> np.ndarray:
    """``[1, 4+nc, n]``: anchor i holds dets[i] = (cxcywh, class, score); other anchors score 0."""
    head = np.zeros((1, 4 + nc, n), np.float32)
    head[0, :4] = 1.0  # junk geometry on empty anchors
    for i, (box, cls, score) in enumerate(dets):
        head[0, :4, i] = box
        head[0, 4 + cls, i] = score
        head[0, 4 + (cls + 1) % nc, i] = score / 2  # a weaker second class must not win
    return head.transpose(0, 2, 1).copy() if transposed else head


def v5(dets: list[tuple[tuple[int, ...], float, int, float]], nc: int = 3, n: int = 50) -> np.ndarray:
    """``[1, n, 5+nc]``: row i holds (cxcywh, objectness, class, class score)."""
    head = np.zeros((1, n, 5 + nc), np.float32)
    head[0, :, 5:] = 0.9  # high class scores but no objectness on empty rows
    for i, (box, obj, cls, score) in enumerate(dets):
        head[0, i, :4] = box
        head[0, i, 4] = obj
        head[0, i, 5:] = 0.01
        head[0, i, 5 + cls] = score
    return head


def v10(dets: list[tuple[list[float], float, int]], n: int = 20) -> np.ndarray:
    head = np.zeros((1, n, 6), np.float32)
    for i, (xyxy, score, cls) in enumerate(dets):
        head[0, i] = [*xyxy, score, cls]
    return head


CASES: list[tuple[str, str, dict[str, np.ndarray], dict[str, Any], object]] = [
    # (case, decoder, outputs, spec kwargs, expected rows best first | (error type, message))
    ("v8 letterbox", "yolov8", {"out": v8([(Q, 1, 0.6), (P, 2, 0.9)])}, {}, [(P_OUT, 0.9, 2), (Q_OUT, 0.6, 1)]),
    (
        "v8 transposed",
        "yolov8",
        {"out": v8([(Q, 1, 0.6), (P, 2, 0.9)], transposed=True)},
        {},
        [(P_OUT, 0.9, 2), (Q_OUT, 0.6, 1)],
    ),
    ("v8 clipped to image", "yolov8", {"out": v8([(E, 0, 0.5)])}, {}, [(E_OUT, 0.5, 0)]),
    ("v8 nms same class", "yolov8", {"out": v8([(P2, 0, 0.8), (P, 0, 0.9)])}, {}, [(P_OUT, 0.9, 0)]),
    ("v8 nms other class", "yolov8", {"out": v8([(P2, 1, 0.8), (P, 0, 0.9)])}, {}, [(P_OUT, 0.9, 0), (P2_OUT, 0.8, 1)]),
    (
        "v8 agnostic",
        "yolov8",
        {"out": v8([(P2, 1, 0.8), (P, 0, 0.9)])},
        {"options": {"class_agnostic": True}},
        [(P_OUT, 0.9, 0)],
    ),
    ("v8 threshold", "yolov8", {"out": v8([(Q, 1, 0.3), (P, 2, 0.9)])}, {"score_threshold": 0.5}, [(P_OUT, 0.9, 2)]),
    ("v8 max_detections", "yolov8", {"out": v8([(Q, 1, 0.6), (P, 2, 0.9)])}, {"max_detections": 1}, [(P_OUT, 0.9, 2)]),
    ("v8 nothing", "yolov8", {"out": v8([])}, {}, []),
    (
        "v8 labels pick axis",
        "yolov8",
        {"out": v8([(P, 1, 0.9)], nc=60, n=40)},
        {"labels": [str(i) for i in range(60)]},
        [(P_OUT, 0.9, 1)],
    ),
    (
        "v8 named output",
        "yolov8",
        {"aux": np.zeros((1, 8)), "out": v8([(P, 1, 0.9)])},
        {"options": {"output": "out"}},
        [(P_OUT, 0.9, 1)],
    ),
    (  # v5 exports may add the raw feature maps [B, 3, H, W, 5+nc]: they do not fit, the head is found
        "v5 extra outputs ignored",
        "yolov5",
        {"feat": np.zeros((1, 3, 20, 20, 8), np.float32), "out": v5([(P, 0.9, 2, 0.8)])},
        {},
        [(P_OUT, 0.72, 2)],
    ),
    (
        "v5 obj x cls",
        "yolov5",
        {"out": v5([(P, 0.9, 2, 0.8), (Q, 0.5, 0, 0.9)])},
        {},
        [(P_OUT, 0.72, 2), (Q_OUT, 0.45, 0)],
    ),
    ("v5 low obj", "yolov5", {"out": v5([(P, 0.2, 2, 1.0)])}, {}, []),
    ("v5 nms", "yolov5", {"out": v5([(P2, 0.9, 1, 0.9), (P, 1.0, 1, 0.9)])}, {}, [(P_OUT, 0.9, 1)]),
    ("v5 transposed", "yolov5", {"out": v5([(P, 0.9, 2, 0.8)]).transpose(0, 2, 1)}, {}, [(P_OUT, 0.72, 2)]),
    (
        "v10",
        "yolov10",
        {"out": v10([([80, 180, 120, 220], 0.6, 1), ([270, 295, 370, 345], 0.9, 4), ([0, 0, 9, 9], 0.1, 0)])},
        {},
        [(P_OUT, 0.9, 4), (Q_OUT, 0.6, 1)],
    ),
    (
        "v10 transposed",
        "yolov10",
        {"out": v10([([80, 180, 120, 220], 0.6, 1)]).transpose(0, 2, 1)},
        {},
        [(Q_OUT, 0.6, 1)],
    ),
    (
        "v10 keeps overlaps",
        "yolov10",
        {"out": v10([([270, 295, 370, 345], 0.9, 0), ([272, 295, 372, 345], 0.8, 0)])},
        {},
        [(P_OUT, 0.9, 0), (P2_OUT, 0.8, 0)],
    ),
    (
        "v10 max_detections",
        "yolov10",
        {"out": v10([([80, 180, 120, 220], 0.6, 1), ([270, 295, 370, 345], 0.9, 4)])},
        {"max_detections": 1},
        [(P_OUT, 0.9, 4)],
    ),
    (
        "v8 float16 (FP16 engines)",
        "yolov8",
        {"out": v8([(Q, 1, 0.625), (P, 2, 0.75)]).astype(np.float16)},
        {},
        [(P_OUT, 0.75, 2), (Q_OUT, 0.625, 1)],
    ),
    ("v5 float16", "yolov5", {"out": v5([(P, 0.75, 2, 1.0)]).astype(np.float16)}, {}, [(P_OUT, 0.75, 2)]),
    # failing cases
    (
        "v8 wrong rank",
        "yolov8",
        {"out": np.zeros((1, 84))},
        {},
        (ConfigError, r"decoder yolov8 expects one output \[B, 4\+nc, N\].*got out \[1, 84\]"),
    ),
    (
        "v8 two outputs",
        "yolov8",
        {"a": v8([]), "b": v8([])},
        {},
        (ConfigError, "2 fit; name one with postprocess.options.output"),
    ),
    (
        "v8 unknown option",
        "yolov8",
        {"out": v8([])},
        {"options": {"agnostic": True}},
        (ConfigError, "postprocess.options.agnostic: unknown option for decoder yolov8"),
    ),
    (
        "v8 bad option value",
        "yolov8",
        {"out": v8([])},
        {"options": {"class_agnostic": "yes"}},
        (ConfigError, "class_agnostic: expected true or false"),
    ),
    (
        "v8 missing name",
        "yolov8",
        {"out": v8([])},
        {"options": {"output": "output0"}},
        (ConfigError, "names output 'output0'"),
    ),
    (
        "v8 labels mismatch",
        "yolov8",
        {"out": v8([], nc=3)},
        {"labels": ["a", "b"]},
        (ConfigError, "decoder yolov8 expects"),
    ),
    (
        "v8 batch mismatch",
        "yolov8",
        {"out": np.concatenate([v8([]), v8([])])},
        {},
        (ConfigError, "batch size 2 but 1 image"),
    ),
    (
        "v5 too few channels",
        "yolov5",
        {"out": np.zeros((1, 10, 5))},
        {},
        (ConfigError, r"decoder yolov5 expects one output \[B, N, 5\+nc\]"),
    ),
    (
        "v10 wrong width",
        "yolov10",
        {"out": np.zeros((1, 20, 7))},
        {},
        (ConfigError, r"decoder yolov10 expects one output \[B, N, 6\]"),
    ),
    (
        "v10 no options",
        "yolov10",
        {"out": v10([])},
        {"options": {"class_agnostic": True}},
        (ConfigError, "unknown option for decoder yolov10"),
    ),
]


@pytest.mark.parametrize(
    ("decoder", "outputs", "kwargs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decode(decoder: str, outputs: dict[str, np.ndarray], kwargs: dict[str, Any], expected: object) -> None:
    s = spec(decoder, **kwargs)
    check_case(outputs, s, expected)


def test_batch_one_result_per_image() -> None:
    head = np.concatenate([v8([(P, 0, 0.9)]), v8([]), v8([(Q, 2, 0.7)])])
    results = decode({"out": head}, spec("yolov8", labels=["person", "car", "dog"]), [LETTERBOX, LETTERBOX, IDENTITY])
    assert [len(r) for r in results] == [1, 0, 1]
    assert close(rows(results[2]), [([80, 180, 120, 220], 0.7, 2)])  # identity meta: network pixels
    assert results[0].to_json()[0]["label"] == "person"  # type: ignore[union-attr]


def test_rtdetr_rows_are_relative_centre_size() -> None:
    """Ultralytics RT-DETR rows: cx, cy, w, h as fractions of the 640 x 640 input, score, class."""
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0] = (0.5, 0.5, 100 / 640, 50 / 640, 0.9, 2)  # P: (320, 320, 100, 50) in network pixels
    rows[0, 1] = (100 / 640, 200 / 640, 40 / 640, 40 / 640, 0.2, 1)  # Q below the threshold
    check_case({"output0": rows}, spec("rtdetr"), [(P_OUT, 0.9, 2)])
