"""``task: obb``: YOLO oriented-box heads -> :class:`~edge.results.Detections` with ``rotated`` boxes.

- decoder ``yolov8`` (default; v8/11/12 obb): ``[B, 4+nc+1, N]`` columns of cx, cy, w, h (the box in its own
  rotated frame), nc class scores and the angle in radians (``[B, N, 4+nc+1]`` accepted);
- decoder ``yolov10`` (end-to-end heads and ``nms=True`` exports): ``[B, M, 7]`` rows of cx, cy, w, h, score,
  class, angle.

Suppression is Ultralytics' rotated NMS: probabilistic IoU (the Hellinger distance between the boxes' Gaussian
approximations, arXiv:2106.06072) and Fast-NMS (a box goes when any better-scoring box of its class overlaps
it by more than the threshold). ``rotated`` is mapped to original pixels (centre through the letterbox, w/h by
the scale, angle unchanged); ``boxes`` holds the rotated boxes' axis-aligned bounds, clipped to the image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge.decoders._common import check_batch, check_options, opt_bool, pick_default
from edge.decoders.yolo import best_class, end_to_end_select, pick_dense
from edge.errors import ConfigError
from edge.preprocess import Meta
from edge.results import Detections, rotated_corners
from edge.spec import PostprocessSpec

OPTIONS = ("output", "class_agnostic")
CHUNK = 1024  # rows of the IoU matrix computed at once (memory: CHUNK x N floats)


def decode(outputs: Mapping[str, np.ndarray], spec: PostprocessSpec, metas: Sequence[Meta]) -> list[Detections]:
    name = spec.decoder or "yolov8"
    label = f"{name} (obb)"
    options = check_options(spec, label, OPTIONS)
    nc = len(spec.labels) or None
    if name == "yolov10":
        pred = pick_default(
            outputs,
            options,
            "output",
            "output0",
            lambda a: a.ndim == 3 and a.shape[2] == 7,
            label,
            "rows [B, M, 7] (cx, cy, w, h, score, class, angle)",
        )
    else:
        pred = pick_dense(
            outputs,
            options,
            None if nc is None else 5 + nc,
            5,
            label,
            "one output [B, 4+nc+1, N] (cx, cy, w, h, class scores, angle) or [B, N, 4+nc+1]",
        )
    check_batch(pred, metas, label, "the output")
    agnostic = opt_bool(options, "class_agnostic", False)
    results = []
    for i, meta in enumerate(metas):
        if name == "yolov10":
            rows = pred[i][end_to_end_select(pred[i], spec)].astype(np.float32)
            rboxes = np.concatenate([rows[:, :4], rows[:, 6:7]], axis=1)
            scores, class_ids = rows[:, 4], rows[:, 5].round().astype(np.int64)
        else:
            c = pred[i].shape[0] - 5
            if c < 1:
                raise ConfigError(f"decoder {label}: the head has {pred[i].shape[0]} channels, no room for classes")
            idx, scores, class_ids = best_class(pred[i][4 : 4 + c], spec.score_threshold)
            rboxes = np.concatenate([pred[i][:4, idx].T, pred[i][4 + c :, idx].T], axis=1).astype(np.float32)
            keep = rotated_nms(rboxes, scores, class_ids, spec.iou_threshold, agnostic, spec.max_detections)
            rboxes, scores, class_ids = rboxes[keep], scores[keep], class_ids[keep]
        results.append(_to_original(rboxes, scores, class_ids, meta, spec))
    return results


def _to_original(
    rboxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, meta: Meta, spec: PostprocessSpec
) -> Detections:
    r = rboxes.astype(np.float32).copy()
    r[:, 0] = (r[:, 0] - meta.pad_x) / meta.scale_x
    r[:, 1] = (r[:, 1] - meta.pad_y) / meta.scale_y
    r[:, 2] /= meta.scale_x
    r[:, 3] /= meta.scale_y
    corners = rotated_corners(r)
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).reshape(-1, 4)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, meta.orig_w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, meta.orig_h)
    return Detections(
        boxes.astype(np.float32),
        np.ascontiguousarray(scores, np.float32),
        np.ascontiguousarray(class_ids, np.int64),
        spec.labels,
        rotated=r,
    )


def probiou(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """``[n, m]`` probabilistic IoU of ``[n, 5]`` and ``[m, 5]`` (cx, cy, w, h, angle) boxes, in 0..1."""

    def cov(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w2, h2 = r[:, 2] ** 2 / 12, r[:, 3] ** 2 / 12
        cos, sin = np.cos(r[:, 4]), np.sin(r[:, 4])
        return w2 * cos**2 + h2 * sin**2, w2 * sin**2 + h2 * cos**2, (w2 - h2) * cos * sin

    a1, b1, c1 = (v[:, None] for v in cov(a))
    a2, b2, c2 = (v[None, :] for v in cov(b))
    x1, y1 = a[:, 0:1], a[:, 1:2]
    x2, y2 = b[None, :, 0], b[None, :, 1]
    den = (a1 + a2) * (b1 + b2) - (c1 + c2) ** 2 + eps
    t1 = ((a1 + a2) * (y1 - y2) ** 2 + (b1 + b2) * (x1 - x2) ** 2) / den * 0.25
    t2 = ((c1 + c2) * (x2 - x1) * (y1 - y2)) / den * 0.5
    det1 = np.clip(a1 * b1 - c1**2, 0, None)
    det2 = np.clip(a2 * b2 - c2**2, 0, None)
    t3 = np.log((den - eps) / (4 * np.sqrt(det1 * det2) + eps) + eps) * 0.5
    bd = np.clip(t1 + t2 + t3, eps, 100.0)
    hd = np.sqrt(1.0 - np.exp(-bd) + eps)
    return (1.0 - hd).astype(np.float32)


def rotated_nms(
    rboxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    agnostic: bool = False,
    max_detections: int | None = None,
) -> np.ndarray:
    """Indices kept by Fast-NMS with :func:`probiou`, best score first (Ultralytics' rotated NMS)."""
    order = np.argsort(-scores, kind="stable")
    r, cls = rboxes[order].astype(np.float64), class_ids[order]
    n = len(order)
    suppressed = np.zeros(n, dtype=bool)
    cols = np.arange(n)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        over = probiou(r[start:stop], r) > iou_threshold
        over &= cols[None, :] > np.arange(start, stop)[:, None]  # only better-scoring boxes suppress
        if not agnostic:
            over &= cls[start:stop, None] == cls[None, :]
        suppressed |= over.any(axis=0)
    keep = order[~suppressed]
    return keep[:max_detections] if max_detections is not None else keep
