"""SSD-style heads exported with box decoding but without NMS: ``boxes [B, N, 4]`` + ``scores [B, N, C]``.

Boxes are x1, y1, x2, y2, relative to the network input (0..1) unless ``normalized: false`` (network
pixels). ``scores`` are per-class probabilities; class ``background_class`` (default 0; ``-1`` for none) is
dropped and the remaining class ids are shifted down so that they index ``labels``. Then NMS per class
(``class_agnostic: true`` for one pass over all classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge.decoders._common import check_batch, check_options, detections, opt_bool, pick_default
from edge.decoders.nonmax import nms
from edge.errors import ConfigError
from edge.preprocess import Meta
from edge.results import Detections
from edge.spec import PostprocessSpec

NAME = "ssd"
OPTIONS = ("boxes", "scores", "normalized", "background_class", "class_agnostic")


def decode(outputs: Mapping[str, np.ndarray], spec: PostprocessSpec, metas: Sequence[Meta]) -> list[Detections]:
    options = check_options(spec, NAME, OPTIONS)
    normalized = opt_bool(options, "normalized", True)
    agnostic = opt_bool(options, "class_agnostic", False)
    background = options.get("background_class", 0)
    if isinstance(background, bool) or not isinstance(background, int) or background < -1:
        raise ConfigError(f"postprocess.options.background_class: expected a class index or -1, got {background!r}")
    boxes = pick_default(
        outputs, options, "boxes", "boxes", lambda a: a.ndim == 3 and a.shape[2] == 4, NAME, "boxes [B, N, 4]"
    )
    scores = pick_default(
        outputs,
        options,
        "scores",
        "scores",
        lambda a: a.ndim == 3 and a.shape[:2] == boxes.shape[:2] and a is not boxes,
        NAME,
        f"scores [B, {boxes.shape[1]}, C]",
    )
    check_batch(boxes, metas, NAME, "boxes")
    if background >= scores.shape[2]:
        raise ConfigError(
            f"postprocess.options.background_class: {background} but scores have {scores.shape[2]} classes"
        )
    results = []
    for i, meta in enumerate(metas):
        s = scores[i].astype(np.float32)
        if background >= 0:
            s = np.delete(s, background, axis=1)
        class_ids = s.argmax(axis=1)
        best = s[np.arange(len(s)), class_ids]
        sel = np.flatnonzero(best > spec.score_threshold)
        b = boxes[i, sel].astype(np.float32)
        if normalized:
            b *= np.array([meta.net_w, meta.net_h, meta.net_w, meta.net_h], dtype=np.float32)
        keep = nms(b, best[sel], class_ids[sel], spec.iou_threshold, agnostic, spec.max_detections)
        results.append(detections(b[keep], best[sel][keep], class_ids[sel][keep], meta, spec))
    return results
