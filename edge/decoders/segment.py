"""``task: segment``: YOLO instance segmentation heads -> :class:`~edge.results.Detections` with ``masks``.

Two outputs: the head and the mask prototypes ``protos [B, nm, mh, mw]`` (Ultralytics' ``output1``):

- decoder ``yolov8`` (default; v5u/v8/v9/11/12): ``[B, 4+nc+nm, N]`` columns of cx, cy, w, h, nc class scores
  and nm mask coefficients (``[B, N, 4+nc+nm]`` accepted);
- decoder ``yolov10`` (end-to-end heads and ``nms=True`` exports): ``[B, K, 6+nm]`` rows of x1, y1, x2, y2,
  score, class and nm coefficients.

Each kept box's mask is ``coefficients @ protos`` (logits at the protos' resolution), upsampled bilinearly to
the network's resolution, then sampled bilinearly into original-image pixels inside the box only (one affine
map undoes the letterbox), and set where the logit is above 0 (Ultralytics' ``retina_masks`` steps). A box whose mask comes out empty is dropped, as Ultralytics does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from edge.decoders._common import check_batch, check_options, detections, opt_bool, pick_default
from edge.decoders.yolo import dense_select, end_to_end_select, pick_dense
from edge.errors import ConfigError
from edge.preprocess import Meta
from edge.results import Detections
from edge.spec import PostprocessSpec

OPTIONS = ("output", "protos", "class_agnostic")


def decode(outputs: Mapping[str, np.ndarray], spec: PostprocessSpec, metas: Sequence[Meta]) -> list[Detections]:
    name = spec.decoder or "yolov8"
    label = f"{name} (segment)"
    options = check_options(spec, label, OPTIONS)
    protos = pick_default(
        outputs, options, "protos", "output1", lambda a: a.ndim == 4, label, "mask prototypes [B, nm, mh, mw]"
    )
    nm = protos.shape[1]
    nc = len(spec.labels) or None
    check_batch(protos, metas, label, "the protos output")
    if name == "yolov10":
        pred = pick_default(
            outputs,
            options,
            "output",
            "output0",
            lambda a: a.ndim == 3 and a.shape[2] == 6 + nm,
            label,
            f"rows [B, K, 6+nm] = [B, K, {6 + nm}] (x1, y1, x2, y2, score, class, mask coefficients)",
        )
    else:
        pred = pick_dense(
            outputs,
            options,
            None if nc is None else 4 + nc + nm,
            4 + nm,
            label,
            "one output [B, 4+nc+nm, N] (cx, cy, w, h, class scores, mask coefficients) or [B, N, 4+nc+nm]",
        )
    check_batch(pred, metas, label, "the output")
    agnostic = opt_bool(options, "class_agnostic", False)
    results = []
    for i, meta in enumerate(metas):
        if name == "yolov10":
            rows = pred[i][end_to_end_select(pred[i], spec)].astype(np.float32)
            boxes, scores, class_ids, coefs = rows[:, :4], rows[:, 4], rows[:, 5].round().astype(np.int64), rows[:, 6:]
        else:
            c = pred[i].shape[0] - 4 - nm
            if c < 1:
                raise ConfigError(f"decoder {label}: the head has {pred[i].shape[0]} channels, no room for classes")
            idx, boxes, scores, class_ids = dense_select(pred[i], c, spec, agnostic)
            coefs = pred[i][4 + c :, idx].T
        dets = detections(boxes, scores, class_ids, meta, spec)
        masks = instance_masks(coefs, protos[i], dets.boxes, meta)
        keep = masks.any(axis=(1, 2))
        results.append(
            Detections(dets.boxes[keep], dets.scores[keep], dets.class_ids[keep], spec.labels, masks=masks[keep])
        )
    return results


def instance_masks(coefs: np.ndarray, protos: np.ndarray, boxes: np.ndarray, meta: Meta) -> np.ndarray:
    """``[n, H, W]`` bool masks in original pixels from ``[n, nm]`` coefficients and ``[nm, mh, mw]`` protos.

    Only the pixels inside each (original-pixel, xyxy) box are computed: columns ``ceil(x1) .. ceil(x2) - 1``,
    likewise rows (the pixels whose index lies in ``[x1, x2)``).
    """
    n = len(coefs)
    masks = np.zeros((n, meta.orig_h, meta.orig_w), dtype=bool)
    if n == 0:
        return masks
    nm, mh, mw = protos.shape
    logits = (np.asarray(coefs, np.float32) @ protos.reshape(nm, -1).astype(np.float32)).reshape(n, mh, mw)
    # like Ultralytics, first upsample the logits to the network's resolution (x4 for its heads), then sample
    # that into the original pixels: the two bilinear steps give its masks (one step gives IoU ~0.95-0.98 with them)
    f = max(1, round(meta.net_w / mw))
    uh, uw = mh * f, mw * f
    # original pixel centre x + 0.5 -> network x (scale, pad) -> upsampled x (uw / net_w) -> its pixel index
    rx, ry = uw / meta.net_w, uh / meta.net_h
    ax, ay = meta.scale_x * rx, meta.scale_y * ry
    bx = (0.5 * meta.scale_x + meta.pad_x) * rx - 0.5
    by = (0.5 * meta.scale_y + meta.pad_y) * ry - 0.5
    for j in range(n):
        x1, y1, x2, y2 = (float(v) for v in boxes[j])
        c0, c1 = max(0, math.ceil(x1)), min(meta.orig_w, math.ceil(x2))
        r0, r1 = max(0, math.ceil(y1)), min(meta.orig_h, math.ceil(y2))
        if c1 <= c0 or r1 <= r0:
            continue
        m = np.array([[ax, 0.0, ax * c0 + bx], [0.0, ay, ay * r0 + by]], dtype=np.float64)
        up = cv2.resize(logits[j], (uw, uh), interpolation=cv2.INTER_LINEAR) if f > 1 else logits[j]
        region = cv2.warpAffine(
            up,
            m,
            (c1 - c0, r1 - r0),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        masks[j, r0:r1, c0:c1] = region > 0
    return masks
