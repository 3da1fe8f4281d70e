"""Helpers for decoder tests: a hand-checkable letterbox Meta and spec construction."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.preprocess import Meta
from edge.results import Detections
from edge.spec import PostprocessSpec

# a 1280x720 frame letterboxed into 640x640: scale 0.5, 140 rows of padding on top.
# network (x, y) -> original ((x - 0) / 0.5, (y - 140) / 0.5)
LETTERBOX = Meta(orig_h=720, orig_w=1280, net_h=640, net_w=640, scale_x=0.5, scale_y=0.5, pad_x=0.0, pad_y=140.0)
IDENTITY = Meta(640, 640, 640, 640, 1.0, 1.0, 0.0, 0.0)


def spec(decoder: str | None, task: str = "detect", **kwargs: Any) -> PostprocessSpec:
    return PostprocessSpec(task=task, decoder=decoder, **kwargs)


def rows(d: Detections) -> list[tuple[list[float], float, int]]:
    """Detections as (box rounded to 0.01, score rounded to 1e-4, class id) rows, for comparing with tables."""
    return [
        ([round(float(v), 2) for v in box], round(float(s), 4), int(c))
        for box, s, c in zip(d.boxes, d.scores, d.class_ids)
    ]


def close(got: list[tuple[list[float], float, int]], want: list[tuple[list[float], float, int]]) -> bool:
    return len(got) == len(want) and all(
        np.allclose(g[0], w[0], atol=0.01) and abs(g[1] - w[1]) < 1e-4 and g[2] == w[2] for g, w in zip(got, want)
    )


def check_case(outputs: dict[str, np.ndarray], s: PostprocessSpec, expected: object, meta: Meta = LETTERBOX) -> None:
    """One row of a decoder table: ``expected`` is either hand-checked ``rows`` or ``(exception, pattern)``."""
    from edge.decoders import decode

    if isinstance(expected, tuple):
        with pytest.raises(expected[0], match=expected[1]):
            decode(outputs, s, [meta])
        return
    (result,) = decode(outputs, s, [meta])
    assert isinstance(result, Detections)
    assert close(rows(result), expected), rows(result)  # type: ignore[arg-type]
