"""decode(): dispatch by task/decoder, raw outputs per image, the SSD decoder, and errors for bad calls."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.decoders import MODULES, decode
from edge.errors import ConfigError
from edge.results import RawOutputs
from edge.spec import DECODERS, PostprocessSpec
from tests.decoders.conftest import IDENTITY, check_case, spec


def test_every_spec_decoder_has_a_module() -> None:
    assert set(DECODERS) <= set(MODULES)


def test_raw_splits_batch() -> None:
    outputs = {"a": np.arange(12.0).reshape(3, 4), "shared": np.ones(5)}
    results = decode(outputs, PostprocessSpec(), [IDENTITY] * 3)
    assert all(isinstance(r, RawOutputs) for r in results)
    assert [r.outputs["a"].tolist() for r in results] == [[[0, 1, 2, 3]], [[4, 5, 6, 7]], [[8, 9, 10, 11]]]  # type: ignore[union-attr]
    assert results[1].to_json() == {
        "a": {"shape": [1, 4], "dtype": "float64"},
        "shared": {"shape": [5], "dtype": "float64"},
    }


@pytest.mark.parametrize(
    ("the_spec", "metas", "message"),
    [
        (PostprocessSpec(), [], "metas is empty"),
        (PostprocessSpec(options={"x": 1}), [IDENTITY], "options.x: unknown option for decoder raw"),
    ],
)
def test_bad_calls(the_spec: PostprocessSpec, metas: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        decode({"a": np.zeros((1, 2))}, the_spec, metas)


# SSD: boxes relative to the 640x640 input; (0.421875, 0.4609375, 0.578125, 0.5390625) = network (270, 295, 370, 345)
# -> original (540, 310, 740, 410); class 0 is background, so score column 3 is label 2
REL = [270 / 640, 295 / 640, 370 / 640, 345 / 640]


def ssd(boxes: list[list[float]], scores: list[list[float]]) -> dict[str, np.ndarray]:
    return {"boxes": np.array([boxes], np.float32), "scores": np.array([scores], np.float32)}


SSD_CASES: list[tuple[str, dict[str, np.ndarray], dict[str, Any], object]] = [
    (
        "relative boxes",
        ssd([REL, REL], [[0.1, 0.0, 0.1, 0.8], [0.9, 0.05, 0.0, 0.05]]),
        {},
        [([540, 310, 740, 410], 0.8, 2)],
    ),
    (
        "pixel boxes",
        ssd([[270, 295, 370, 345]], [[0.1, 0.7, 0.2]]),
        {"options": {"normalized": False}},
        [([540, 310, 740, 410], 0.7, 0)],
    ),
    (
        "no background",
        ssd([REL], [[0.6, 0.3]]),
        {"options": {"background_class": -1}},
        [([540, 310, 740, 410], 0.6, 0)],
    ),
    ("nms per class", ssd([REL, REL], [[0, 0.9, 0], [0, 0.8, 0]]), {}, [([540, 310, 740, 410], 0.9, 0)]),
    (
        "renamed",
        {"b": ssd([REL], [[0, 0.9]])["boxes"], "s": ssd([REL], [[0, 0.9]])["scores"]},
        {},
        [([540, 310, 740, 410], 0.9, 0)],
    ),
    (
        "bad background",
        ssd([REL], [[0.6, 0.3]]),
        {"options": {"background_class": 2}},
        (ConfigError, "background_class: 2 but scores have 2 classes"),
    ),
    (
        "unknown option",
        ssd([REL], [[0.6, 0.3]]),
        {"options": {"nms": True}},
        (ConfigError, "options.nms: unknown option for decoder ssd"),
    ),
    ("no boxes", {"scores": np.zeros((1, 3, 2))}, {}, (ConfigError, r"decoder ssd expects boxes \[B, N, 4\]")),
]


@pytest.mark.parametrize(("outputs", "kwargs", "expected"), [c[1:] for c in SSD_CASES], ids=[c[0] for c in SSD_CASES])
def test_ssd(outputs: dict[str, np.ndarray], kwargs: dict[str, Any], expected: object) -> None:
    s = spec("ssd", **kwargs)
    check_case(outputs, s, expected)
