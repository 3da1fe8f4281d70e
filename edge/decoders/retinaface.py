"""RetinaFace (prior-box face detector): ``loc [B,N,4]``, ``conf [B,N,2]``, ``landmarks [B,N,10]``.

Priors are laid on every stride's grid (``ceil(size / stride)`` cells, row-major, ``min_sizes`` per cell)
for the NETWORK input size and cached. Decoding (SSD style, in network pixels)::

    centre = prior_centre + loc[:2] * variances[0] * prior_size
    size   = prior_size * exp(loc[2:] * variances[1])
    point  = prior_centre + landmark * variances[0] * prior_size     (5 points: eyes, nose, mouth corners)

Score is ``conf[:, 1]`` (softmax applied first if the model emits logits). Boxes then go through NMS.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np

from edge.decoders._common import check_batch, check_options, detections, is_probabilities, pick_default
from edge.decoders.nonmax import nms
from edge.errors import ConfigError
from edge.preprocess import Meta
from edge.results import Detections
from edge.spec import PostprocessSpec

NAME = "retinaface"
OPTIONS = ("loc", "conf", "landmarks", "variances", "steps", "min_sizes")
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)
LABELS = ("face",)  # class 0, the only one


@lru_cache(maxsize=16)
def priors(net_h: int, net_w: int, steps: tuple[float, ...], min_sizes: tuple[tuple[float, ...], ...]) -> np.ndarray:
    """``[N, 4]`` float32 priors (cx, cy, w, h) in network pixels; read-only (shared by the cache)."""
    parts = []
    for step, sizes in zip(steps, min_sizes):
        nx, ny = math.ceil(net_w / step), math.ceil(net_h / step)  # ceil: partial cells at the edge count
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = (np.stack([xx.ravel(), yy.ravel()], axis=1) + 0.5) * step
        wh = np.asarray(sizes, dtype=np.float64)
        p = np.empty((ny * nx, len(sizes), 4))
        p[:, :, :2] = centres[:, None, :]
        p[:, :, 2] = wh[None, :]
        p[:, :, 3] = wh[None, :]
        parts.append(p.reshape(-1, 4))
    out = np.concatenate(parts).astype(np.float32)
    out.flags.writeable = False
    return out


def _numbers(options: Mapping[str, Any], key: str, default: tuple[float, ...], count: int | None) -> tuple[float, ...]:
    """Option ``key``: ``count`` (any number when None) positive numbers."""
    value = options.get(key, default)
    if (
        not isinstance(value, (list, tuple))
        or not value
        or (count is not None and len(value) != count)
        or not all(_positive(v) for v in value)
    ):
        raise ConfigError(f"postprocess.options.{key}: expected {count or 'some'} positive numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _min_sizes(options: Mapping[str, Any], count: int) -> tuple[tuple[float, ...], ...]:
    value = options.get("min_sizes", MIN_SIZES)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != count
        or not all(isinstance(v, (list, tuple)) and v and all(_positive(x) for x in v) for v in value)
    ):
        raise ConfigError(
            f"postprocess.options.min_sizes: expected a list of [size, ...] lists, one per step ({count}), got {value!r}"
        )
    return tuple(tuple(float(x) for x in v) for v in value)


def _positive(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def decode(outputs: Mapping[str, np.ndarray], spec: PostprocessSpec, metas: Sequence[Meta]) -> list[Detections]:
    options = check_options(spec, NAME, OPTIONS)
    variances = _numbers(options, "variances", VARIANCES, 2)
    steps = _numbers(options, "steps", STEPS, None)
    if not all(s == int(s) for s in steps):
        raise ConfigError(f"postprocess.options.steps: expected whole numbers of pixels, got {list(steps)}")
    min_sizes = _min_sizes(options, len(steps))
    loc = pick_default(outputs, options, "loc", "loc", _last(4), NAME, "box deltas loc [B, N, 4]")
    conf = pick_default(outputs, options, "conf", "conf", _last(2), NAME, "scores conf [B, N, 2]")
    marks = pick_default(outputs, options, "landmarks", "landmarks", _last(10), NAME, "landmarks [B, N, 10]")
    if not loc.shape[:2] == conf.shape[:2] == marks.shape[:2]:
        raise ConfigError(
            f"decoder {NAME}: loc {list(loc.shape)}, conf {list(conf.shape)} and landmarks {list(marks.shape)} "
            "must share [B, N]"
        )
    check_batch(loc, metas, NAME, "loc")
    v0, v1 = np.float32(variances[0]), np.float32(variances[1])
    if not spec.labels:  # one class: a bundle built without --labels still says "face", not "0"
        spec = replace(spec, labels=LABELS)
    results = []
    for i, meta in enumerate(metas):
        pri = priors(meta.net_h, meta.net_w, steps, min_sizes)
        if len(pri) != loc.shape[1]:
            raise ConfigError(
                f"decoder {NAME}: a {meta.net_w}x{meta.net_h} input has {len(pri)} priors (steps {list(steps)}, "
                f"min_sizes {[list(s) for s in min_sizes]}) but the model gives N={loc.shape[1]}; "
                "check postprocess.options steps/min_sizes"
            )
        c = conf[i].astype(np.float32, copy=False)
        scores = c[:, 1] if is_probabilities(c[:64]) else 1.0 / (1.0 + np.exp(c[:, 0] - c[:, 1]))
        sel = np.flatnonzero(scores > spec.score_threshold)
        p = pri[sel]
        d = loc[i, sel].astype(np.float32, copy=False)
        centre = p[:, :2] + d[:, :2] * v0 * p[:, 2:]
        half = p[:, 2:] * np.exp(d[:, 2:] * v1) * 0.5
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = p[:, None, :2] + marks[i, sel].reshape(-1, 5, 2).astype(np.float32) * v0 * p[:, None, 2:]
        s = scores[sel]
        keep = nms(boxes, s, None, spec.iou_threshold, agnostic=True, max_detections=spec.max_detections)
        results.append(detections(boxes[keep], s[keep], np.zeros(len(keep), np.int64), meta, spec, points[keep]))
    return results


def _last(k: int) -> Any:
    return lambda a: a.ndim == 3 and a.shape[2] == k
