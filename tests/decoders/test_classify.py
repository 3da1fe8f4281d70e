"""Classification: softmax only for logits, top-k best first, ties by class id."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.decoders import decode
from edge.errors import ConfigError
from edge.results import Classifications
from tests.decoders.conftest import IDENTITY, spec

LOGITS = np.array([[1.0, 3.0, 2.0, 0.0]], np.float32)
# softmax of LOGITS: e^k / (e^0 + e^1 + e^2 + e^3) = e^k / 31.1929
SOFT = [np.e**3 / 31.19287, np.e**2 / 31.19287, np.e / 31.19287]
PROBS = np.array([[0.1, 0.6, 0.3, 0.0]], np.float32)

CASES: list[tuple[str, dict[str, np.ndarray], dict[str, Any], object]] = [
    ("logits get softmax", {"logits": LOGITS}, {"top_k": 3}, ([1, 2, 0], SOFT)),
    ("probabilities kept", {"prob": PROBS}, {"top_k": 2}, ([1, 2], [0.6, 0.3])),
    (
        "softmax forced",
        {"prob": PROBS},
        {"top_k": 1, "options": {"softmax": True}},
        ([1], [np.e**0.6 / (np.e**0.1 + np.e**0.6 + np.e**0.3 + 1)]),
    ),
    ("softmax off", {"logits": LOGITS}, {"top_k": 2, "options": {"softmax": False}}, ([1, 2], [3.0, 2.0])),
    ("top_k above C", {"prob": PROBS}, {"top_k": 10}, ([1, 2, 0, 3], [0.6, 0.3, 0.1, 0.0])),
    (
        "ties by class id",
        {"prob": np.array([[0.25, 0.25, 0.25, 0.25]], np.float32)},
        {"top_k": 3},
        ([0, 1, 2], [0.25] * 3),
    ),
    ("[B, C, 1, 1]", {"prob": PROBS.reshape(1, 4, 1, 1)}, {"top_k": 1}, ([1], [0.6])),
    (
        "named among several",
        {"feat": np.ones((1, 4, 7, 7)), "prob": PROBS},
        {"top_k": 1, "options": {"output": "prob"}},
        ([1], [0.6]),
    ),
    ("two candidates", {"a": PROBS, "b": PROBS}, {}, (ConfigError, "2 fit; name one with postprocess.options.output")),
    (
        "no candidate",
        {"feat": np.ones((1, 4, 7, 7))},
        {},
        (ConfigError, r"decoder classify expects one output \[B, C\].*none fits"),
    ),
    (
        "bad softmax",
        {"prob": PROBS},
        {"options": {"softmax": "yes"}},
        (ConfigError, "softmax: expected auto, true or false"),
    ),
    (
        "unknown option",
        {"prob": PROBS},
        {"options": {"topk": 3}},
        (ConfigError, "options.topk: unknown option for decoder classify"),
    ),
    ("batch mismatch", {"prob": np.concatenate([PROBS, PROBS])}, {}, (ConfigError, "batch size 2 but 1 image")),
]


@pytest.mark.parametrize(("outputs", "kwargs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode(outputs: dict[str, np.ndarray], kwargs: dict[str, Any], expected: object) -> None:
    s = spec(None, task="classify", labels=["cat", "dog", "fox", "owl"], **kwargs)
    if isinstance(expected, tuple) and isinstance(expected[0], type):
        with pytest.raises(expected[0], match=expected[1]):
            decode(outputs, s, [IDENTITY])
        return
    (result,) = decode(outputs, s, [IDENTITY])
    assert isinstance(result, Classifications)
    ids, scores = expected  # type: ignore[misc]
    assert result.class_ids.tolist() == ids
    np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-6)


def test_batch_and_labels() -> None:
    batch = np.array([[0.1, 0.9, 0.0, 0.0], [0.0, 0.0, 0.2, 0.8]], np.float32)
    results = decode(
        {"prob": batch}, spec(None, task="classify", labels=["cat", "dog", "fox", "owl"], top_k=1), [IDENTITY] * 2
    )
    assert [r.to_json()[0]["label"] for r in results] == ["dog", "owl"]  # type: ignore[index]
