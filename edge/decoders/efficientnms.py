"""Models whose graph ends in TensorRT's EfficientNMS (or an equivalent): detections come out already suppressed.

Outputs (names configurable, else found by shape and dtype)::

    num_detections    [B, 1]    int    valid rows per image
    detection_boxes   [B, K, 4] float  x1, y1, x2, y2 in network pixels
    detection_scores  [B, K]    float
    detection_classes [B, K]    int (float accepted when named)

Rows past ``num_detections`` are ignored; the score threshold and ``max_detections`` still apply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge.decoders._common import check_batch, check_options, describe, detections, opt_str, pick
from edge.errors import ConfigError
from edge.preprocess import Meta
from edge.results import Detections
from edge.spec import PostprocessSpec

NAME = "efficientnms"
DEFAULTS = {
    "num_detections": "num_detections",
    "boxes": "detection_boxes",
    "scores": "detection_scores",
    "classes": "detection_classes",
}


def decode(outputs: Mapping[str, np.ndarray], spec: PostprocessSpec, metas: Sequence[Meta]) -> list[Detections]:
    options = check_options(spec, NAME, tuple(DEFAULTS))
    names = {key: opt_str(options, key, None) for key in DEFAULTS}
    if all(n is None for n in names.values()) and not all(d in outputs for d in DEFAULTS.values()):
        names = _by_shape(outputs)
    names = {key: n if n is not None else DEFAULTS[key] for key, n in names.items()}

    def get(key: str, fits: object, expected: str) -> np.ndarray:
        return pick(outputs, names[key], fits, NAME, expected, key)  # type: ignore[arg-type]

    num = get("num_detections", lambda a: a.ndim in (1, 2) and a.size == a.shape[0], "num_detections [B, 1]")
    boxes = get("boxes", lambda a: a.ndim == 3 and a.shape[2] == 4, "detection_boxes [B, K, 4]")
    k = boxes.shape[1]
    scores = get("scores", lambda a: a.shape == boxes.shape[:2], f"detection_scores [B, {k}]")
    classes = get("classes", lambda a: a.shape == boxes.shape[:2], f"detection_classes [B, {k}]")
    check_batch(boxes, metas, NAME, "detection_boxes")
    check_batch(num, metas, NAME, "num_detections")
    counts = num.reshape(-1).astype(np.int64)
    results = []
    for i, meta in enumerate(metas):
        n = int(min(max(counts[i], 0), k))
        s = scores[i, :n].astype(np.float32)
        sel = np.flatnonzero(s > spec.score_threshold)
        sel = sel[np.argsort(-s[sel], kind="stable")][: spec.max_detections]
        b = boxes[i, sel].astype(np.float32)
        c = np.rint(classes[i, sel]).astype(np.int64)
        results.append(detections(b, s[sel], c, meta, spec))
    return results


def _by_shape(outputs: Mapping[str, np.ndarray]) -> dict[str, str | None]:
    """Output names by the conventional shapes and dtypes, for graphs that renamed the outputs."""
    found: dict[str, list[str]] = {key: [] for key in DEFAULTS}
    for name, a in outputs.items():
        integer = np.issubdtype(a.dtype, np.integer)
        if a.ndim == 3 and a.shape[2] == 4:
            found["boxes"].append(name)
        elif a.ndim == 2 and a.shape[1] == 1 and integer:
            found["num_detections"].append(name)
        elif a.ndim == 2:
            found["classes" if integer else "scores"].append(name)
    if any(len(v) != 1 for v in found.values()):
        raise ConfigError(
            f"decoder {NAME} expects outputs num_detections [B, 1] int, detection_boxes [B, K, 4], "
            f"detection_scores [B, K] float and detection_classes [B, K] int; got {describe(outputs)} "
            "(name them with postprocess.options num_detections/boxes/scores/classes)"
        )
    return {key: v[0] for key, v in found.items()}
