"""``task: pose``: YOLO pose heads -> :class:`~edge.results.Detections` with ``keypoints`` and ``keypoint_scores``.

- decoder ``yolov8`` (default; v8/11/12 pose): ``[B, 4+nc+K*d, N]`` columns of cx, cy, w, h, nc class scores and
  K keypoints of d values (x, y and, for d = 3, a visibility score), already decoded to network pixels by the
  exported graph (``[B, N, 4+nc+K*d]`` accepted);
- decoder ``yolov10`` (end-to-end heads and ``nms=True`` exports): ``[B, M, 6+K*d]`` rows of x1, y1, x2, y2,
  score, class and the keypoints.

K and nc: with ``labels``, nc is their count and K follows from the channel count; without, K comes from the
option ``keypoints`` (default 17, COCO's person keypoints) and nc from the channel count. Keypoints are mapped
to original pixels and clipped to the image, like the boxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edge.decoders._common import check_batch, check_options, detections, opt_bool, pick_default
from edge.decoders.yolo import dense_select, end_to_end_select, pick_dense
from edge.errors import ConfigError
from edge.preprocess import Meta
from edge.results import Detections
from edge.spec import PostprocessSpec

OPTIONS = ("output", "class_agnostic", "keypoints", "keypoint_dims")


def _positive_int(options: Mapping[str, Any], key: str, default: int, allowed: tuple[int, ...] | None = None) -> int:
    value = options.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (allowed and value not in allowed):
        want = " or ".join(map(str, allowed)) if allowed else "a positive whole number"
        raise ConfigError(f"postprocess.options.{key}: expected {want}, got {value!r}")
    return value


def decode(outputs: Mapping[str, np.ndarray], spec: PostprocessSpec, metas: Sequence[Meta]) -> list[Detections]:
    name = spec.decoder or "yolov8"
    label = f"{name} (pose)"
    options = check_options(spec, label, OPTIONS)
    dims = _positive_int(options, "keypoint_dims", 3, (2, 3))
    nc = len(spec.labels) or None
    k_opt = _positive_int(options, "keypoints", 17) if nc is None or "keypoints" in options else None
    if name == "yolov10":
        width = None if k_opt is None else 6 + k_opt * dims

        def rows_fit(a: np.ndarray) -> bool:
            return a.ndim == 3 and a.shape[2] > 6 and (a.shape[2] - 6) % dims == 0 and width in (None, a.shape[2])

        pred = pick_default(
            outputs,
            options,
            "output",
            "output0",
            rows_fit,
            label,
            f"rows [B, M, 6+K*{dims}] (box, score, class, keypoints)",
        )
        k = (pred.shape[2] - 6) // dims
    else:
        pred = pick_dense(
            outputs,
            options,
            None if nc is None or k_opt is None else 4 + nc + k_opt * dims,
            4 + dims,
            label,
            f"one output [B, 4+nc+K*{dims}, N] (cx, cy, w, h, class scores, keypoints) or [B, N, 4+nc+K*{dims}]",
        )
        c = pred.shape[1]
        if nc is not None:
            k, rest = divmod(c - 4 - nc, dims)
            if rest or k < 1:
                raise ConfigError(
                    f"decoder {label}: {c} channels minus 4 box values and {nc} classes (the labels) is not a whole "
                    f"number of {dims}-value keypoints; check the labels or postprocess.options.keypoint_dims"
                )
        else:
            k = int(k_opt or 17)
            if c - 4 - k * dims < 1:
                raise ConfigError(
                    f"decoder {label}: {c} channels leave no class scores beside 4 box values and {k} keypoints of "
                    f"{dims} values; set postprocess.options.keypoints (K) or give the labels"
                )
            nc = c - 4 - k * dims
    check_batch(pred, metas, label, "the output")
    agnostic = opt_bool(options, "class_agnostic", False)
    results = []
    for i, meta in enumerate(metas):
        if name == "yolov10":
            rows = pred[i][end_to_end_select(pred[i], spec)].astype(np.float32)
            boxes, scores, class_ids = rows[:, :4], rows[:, 4], rows[:, 5].round().astype(np.int64)
            kp = rows[:, 6:]
        else:
            assert nc is not None
            idx, boxes, scores, class_ids = dense_select(pred[i], nc, spec, agnostic)
            kp = pred[i][4 + nc :, idx].T.astype(np.float32)
        kp = kp.reshape(len(kp), k, dims)
        dets = detections(boxes, scores, class_ids, meta, spec, keypoints=np.ascontiguousarray(kp[..., :2]))
        vis = np.ascontiguousarray(kp[..., 2]) if dims == 3 else None
        results.append(
            Detections(
                dets.boxes, dets.scores, dets.class_ids, spec.labels, keypoints=dets.keypoints, keypoint_scores=vis
            )
        )
    return results
