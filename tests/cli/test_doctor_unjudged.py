"""`edge doctor` judges int8/fp8 detectors by their decoded boxes; on inputs where neither the reference nor the
artifact finds a box (its default synthetic photos, for a face detector) that comparison says nothing, yet it
printed "box_f1 1.000 (0 vs 0 boxes) ok". Now it says the results were not judged and how to judge them."""

from __future__ import annotations

import numpy as np

from edge.cli.doctor import results_agreement
from edge.preprocess import Meta
from edge.spec import PostprocessSpec

POST = PostprocessSpec(task="detect", decoder="yolov8", labels=("a", "b"), score_threshold=0.5)
META = [Meta(orig_h=64, orig_w=64, net_h=64, net_w=64, scale_x=1.0, scale_y=1.0, pad_x=0.0, pad_y=0.0)]


def head(score: float) -> dict[str, np.ndarray]:
    """One YOLOv8 output [1, 4 + 2 classes, 16 anchors]: anchor 0 is a 20x20 box at (32, 32) of class 0."""
    out = np.zeros((1, 6, 16), np.float32)
    out[0, :4, 0] = (32, 32, 20, 20)
    out[0, 4, 0] = score
    return {"output0": out}


def test_no_box_in_either_is_not_judged() -> None:
    verdict = results_agreement(head(0.1), head(0.2), POST, META)
    assert verdict is not None and verdict["boxes"] == [0, 0]
    assert verdict["note"] == "no box in either: not judged; give --images with objects in them"


def test_boxes_found_are_judged() -> None:
    verdict = results_agreement(head(0.9), head(0.8), POST, META)
    assert verdict is not None and verdict["boxes"] == [1, 1] and verdict["value"] == 1.0
    assert "note" not in verdict
    missed = results_agreement(head(0.1), head(0.8), POST, META)
    assert missed is not None and missed["value"] == 0.0 and not missed["ok"] and "note" not in missed
