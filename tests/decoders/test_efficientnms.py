"""EfficientNMS-style outputs (already suppressed): counts, thresholds, names, letterbox undo."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.errors import ConfigError
from tests.decoders.conftest import check_case, spec

# network xyxy -> original (x / 0.5, (y - 140) / 0.5)
BOXES = [[270, 295, 370, 345], [80, 180, 120, 220], [0, 140, 10, 150], [1, 1, 2, 2]]
OUT = [[540, 310, 740, 410], [160, 80, 240, 160], [0, 0, 20, 20]]


def nms_outputs(
    count: int = 3,
    k: int = 4,
    names: tuple[str, ...] = ("num_detections", "detection_boxes", "detection_scores", "detection_classes"),
    class_dtype: Any = np.int32,
) -> dict[str, np.ndarray]:
    boxes = np.zeros((1, k, 4), np.float32)
    boxes[0, :4] = BOXES
    scores = np.zeros((1, k), np.float32)
    scores[0, :4] = [0.9, 0.6, 0.3, 0.95]  # row 3 lies past num_detections: ignored
    classes = np.zeros((1, k), class_dtype)
    classes[0, :4] = [2, 0, 1, 5]
    arrays = [np.array([[count]], np.int32), boxes, scores, classes]
    return dict(zip(names, arrays))


RENAMED = ("num", "det_boxes", "det_scores", "det_classes")
CASES: list[tuple[str, dict[str, np.ndarray], dict[str, Any], object]] = [
    ("standard names", nms_outputs(), {}, [(OUT[0], 0.9, 2), (OUT[1], 0.6, 0), (OUT[2], 0.3, 1)]),
    ("count limits rows", nms_outputs(count=1), {}, [(OUT[0], 0.9, 2)]),
    ("count zero", nms_outputs(count=0), {}, []),
    (
        "count past K is clamped",
        nms_outputs(count=9),
        {},
        [([2, 0, 4, 0], 0.95, 5), (OUT[0], 0.9, 2), (OUT[1], 0.6, 0), (OUT[2], 0.3, 1)],
    ),
    ("threshold", nms_outputs(), {"score_threshold": 0.5}, [(OUT[0], 0.9, 2), (OUT[1], 0.6, 0)]),
    ("max_detections", nms_outputs(), {"max_detections": 2}, [(OUT[0], 0.9, 2), (OUT[1], 0.6, 0)]),
    ("found by shape", nms_outputs(names=RENAMED), {}, [(OUT[0], 0.9, 2), (OUT[1], 0.6, 0), (OUT[2], 0.3, 1)]),
    (
        "float classes by name",
        nms_outputs(names=RENAMED, class_dtype=np.float32),
        {"options": dict(zip(("num_detections", "boxes", "scores", "classes"), RENAMED))},
        [(OUT[0], 0.9, 2), (OUT[1], 0.6, 0), (OUT[2], 0.3, 1)],
    ),
    (
        "float classes ambiguous",
        nms_outputs(names=RENAMED, class_dtype=np.float32),
        {},
        (ConfigError, "decoder efficientnms expects outputs num_detections"),
    ),
    (
        "wrong name",
        nms_outputs(),
        {"options": {"boxes": "bboxes"}},
        (ConfigError, "options.boxes names output 'bboxes'"),
    ),
    (
        "unknown option",
        nms_outputs(),
        {"options": {"keep_top_k": 5}},
        (ConfigError, "options.keep_top_k: unknown option for decoder efficientnms"),
    ),
    (
        "scores shape",
        {**nms_outputs(), "detection_scores": np.zeros((1, 3), np.float32)},
        {},
        (ConfigError, r"expects detection_scores \[B, 4\]"),
    ),
]


@pytest.mark.parametrize(("outputs", "kwargs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode(outputs: dict[str, np.ndarray], kwargs: dict[str, Any], expected: object) -> None:
    s = spec("efficientnms", **kwargs)
    check_case(outputs, s, expected)
