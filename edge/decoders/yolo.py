"""YOLO family heads, decoded in network pixels then mapped back through the letterbox.

- ``yolov5``: ``[B, N, 5+nc]`` rows of cx, cy, w, h, objectness, nc class scores (score = obj * class);
- ``yolov8`` (also v9/v11): ``[B, 4+nc, N]`` columns of cx, cy, w, h, nc class scores (no objectness);
- ``yolov10`` (end-to-end, NMS inside the model): ``[B, N, 6]`` rows of x1, y1, x2, y2, score, class;
- ``rtdetr`` (Ultralytics RT-DETR, end-to-end): ``[B, N, 6]`` rows of cx, cy, w, h as fractions of the input
  (0..1), score, class.

v5/v8 also accept the transposed layout. Without labels, the smaller of the last two axes is taken to be the
channel axis (N, the number of anchors, is in the thousands); with labels, ``4+nc``/``5+nc`` must match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from edge.decoders._common import (
    check_batch,
    check_options,
    cxcywh_to_xyxy,
    detections,
    opt_bool,
    opt_str,
    pick,
    pick_default,
)
from edge.decoders.nonmax import nms
from edge.preprocess import Meta
from edge.results import Detections
from edge.spec import PostprocessSpec

OPTIONS = {
    "yolov5": ("output", "class_agnostic"),
    "yolov8": ("output", "class_agnostic"),
    "yolov10": ("output",),
    "rtdetr": ("output",),
}
EXTRA = {"yolov5": 5, "yolov8": 4}  # channels before the class scores
EXPECTED = {
    "yolov5": "one output [B, N, 5+nc] (cx, cy, w, h, objectness, class scores)",
    "yolov8": "one output [B, 4+nc, N] (cx, cy, w, h, class scores) or [B, N, 4+nc]",
    "yolov10": "one output [B, N, 6] (x1, y1, x2, y2, score, class)",
    "rtdetr": "one output [B, N, 6] (cx, cy, w, h as fractions of the input, score, class)",
}


def decode(outputs: Mapping[str, np.ndarray], spec: PostprocessSpec, metas: Sequence[Meta]) -> list[Detections]:
    name = str(spec.decoder)
    options = check_options(spec, name, OPTIONS[name])
    out_name = opt_str(options, "output", None)
    if name in ("yolov10", "rtdetr"):
        pred = pick(outputs, out_name, _end_to_end, name, EXPECTED[name])
        check_batch(pred, metas, name, "the output")
        if pred.shape[2] != 6:
            pred = pred.transpose(0, 2, 1)
        return [_end_to_end_item(pred[i], meta, spec, name == "rtdetr") for i, meta in enumerate(metas)]
    extra = EXTRA[name]
    nc = len(spec.labels)
    expected = EXPECTED[name]
    if nc:
        expected += f" with nc = {nc} (the labels): {extra + nc} channels"
    elif name == "yolov8":
        expected += "; a [B, N, 6] output holds end-to-end rows (nms=True exports, v10, 26): --decoder yolov10"
    pred = pick(outputs, out_name, lambda a: _channel_axis(a, extra, nc) is not None, name, expected)
    check_batch(pred, metas, name, "the output")
    if _channel_axis(pred, extra, nc) == 2:
        pred = pred.transpose(0, 2, 1)  # -> [B, C, N], a view
    agnostic = opt_bool(options, "class_agnostic", False)
    return [_dense_item(pred[i], extra, meta, spec, agnostic) for i, meta in enumerate(metas)]


def _channel_axis(a: np.ndarray, extra: int, nc: int) -> int | None:
    """1 for ``[B, C, N]``, 2 for ``[B, N, C]``, None when ``a`` is not a ``C = extra + nc`` head."""
    if a.ndim != 3:
        return None
    if nc:
        return 1 if a.shape[1] == extra + nc else 2 if a.shape[2] == extra + nc else None
    axis = 1 if a.shape[1] < a.shape[2] else 2
    if extra == 4 and axis == 2 and a.shape[2] == 6:
        return None  # [B, N, 6] is the end-to-end row layout (x1, y1, x2, y2, score, class), not 2 classes
    return axis if a.shape[axis] > extra else None


def _end_to_end(a: np.ndarray) -> bool:
    return a.ndim == 3 and 6 in a.shape[1:]


def _dense_item(pred: np.ndarray, extra: int, meta: Meta, spec: PostprocessSpec, agnostic: bool) -> Detections:
    """One image's ``[C, N]`` head: best class per anchor, threshold, NMS."""
    if extra == 5:  # objectness first: most anchors go before touching class scores
        cand = np.flatnonzero(pred[4] > spec.score_threshold)
        cls_scores = pred[5:, cand] * pred[4, cand]
        idx, scores, class_ids = best_class(cls_scores, spec.score_threshold)
        idx = cand[idx]
    else:
        idx, scores, class_ids = best_class(pred[4:], spec.score_threshold)
    boxes = cxcywh_to_xyxy(pred[:4, idx].T.astype(np.float32))
    keep = nms(boxes, scores, class_ids, spec.iou_threshold, agnostic=agnostic, max_detections=spec.max_detections)
    return detections(boxes[keep], scores[keep], class_ids[keep], meta, spec)


def best_class(cls_scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[nc, N]`` class scores -> (anchor indices whose best score is above ``threshold``, that score, its class)."""
    best = cls_scores.max(axis=0)  # a plain max is several times faster than argmax over all anchors
    sel = np.flatnonzero(best > threshold)
    return sel, best[sel].astype(np.float32), cls_scores[:, sel].argmax(axis=0).astype(np.int64)


def dense_select(pred: np.ndarray, nc: int, spec: PostprocessSpec, agnostic: bool) -> tuple[np.ndarray, ...]:
    """One image's dense ``[4+nc+extra, N]`` head (cx, cy, w, h, class scores, extra): best class, threshold, NMS.

    Returns the kept anchors' indices, their xyxy boxes (network pixels), scores and class ids, best first.
    """
    idx, scores, class_ids = best_class(pred[4 : 4 + nc], spec.score_threshold)
    boxes = cxcywh_to_xyxy(pred[:4, idx].T.astype(np.float32))
    keep = nms(boxes, scores, class_ids, spec.iou_threshold, agnostic=agnostic, max_detections=spec.max_detections)
    return idx[keep], boxes[keep], scores[keep], class_ids[keep]


def end_to_end_select(rows: np.ndarray, spec: PostprocessSpec) -> np.ndarray:
    """One image's ``[K, 6+extra]`` rows, already suppressed by the model: the rows above the threshold, best
    first, at most ``max_detections``."""
    sel = np.flatnonzero(rows[:, 4] > spec.score_threshold)
    return sel[np.argsort(-rows[sel, 4], kind="stable")][: spec.max_detections]


def _end_to_end_item(pred: np.ndarray, meta: Meta, spec: PostprocessSpec, relative_cxcywh: bool = False) -> Detections:
    """One image's ``[N, 6]`` rows, already suppressed by the model: threshold, best first, cap."""
    rows = pred[end_to_end_select(pred, spec)].astype(np.float32)
    boxes = rows[:, :4]
    if relative_cxcywh:  # RT-DETR: centre and size as fractions of the network input
        boxes = cxcywh_to_xyxy(boxes * np.array([meta.net_w, meta.net_h, meta.net_w, meta.net_h], np.float32))
    return detections(boxes, rows[:, 4], rows[:, 5].round().astype(np.int64), meta, spec)


def channels_first(a: np.ndarray, channels: int | None, min_channels: int) -> np.ndarray | None:
    """A ``[B, C, N]`` view of a dense head given as ``[B, C, N]`` or ``[B, N, C]``; None when ``a`` is not one.

    With ``channels`` known, the axis of that size is C; otherwise the smaller of the last two (N, the anchors,
    runs into the thousands), which must exceed ``min_channels``.
    """
    if a.ndim != 3:
        return None
    if channels is not None:
        axis = 1 if a.shape[1] == channels else 2 if a.shape[2] == channels else None
    else:
        axis = 1 if a.shape[1] < a.shape[2] else 2
        axis = axis if a.shape[axis] > min_channels else None
    if axis is None:
        return None
    return a if axis == 1 else a.transpose(0, 2, 1)


def pick_dense(
    outputs: Mapping[str, np.ndarray],
    options: Mapping[str, Any],
    channels: int | None,
    min_channels: int,
    decoder: str,
    expected: str,
) -> np.ndarray:
    """The dense head's output (option ``output``, else ``output0``, else the one that fits) as ``[B, C, N]``."""

    def fits(a: np.ndarray) -> bool:
        return channels_first(a, channels, min_channels) is not None

    found = pick_default(outputs, options, "output", "output0", fits, decoder, expected)
    return cast(np.ndarray, channels_first(found, channels, min_channels))  # found fits: never None
