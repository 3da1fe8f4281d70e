"""Helpers every decoder shares: option checks, finding outputs, building results in original pixels."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edge.errors import ConfigError
from edge.preprocess import Meta
from edge.results import Detections
from edge.spec import PostprocessSpec


def check_options(spec: PostprocessSpec, decoder: str, known: Sequence[str]) -> Mapping[str, Any]:
    """``spec.options`` after checking every key is one ``decoder`` understands."""
    options = spec.options or {}
    for key in options:
        if key not in known:
            valid = ", ".join(sorted(known)) or "none"
            raise ConfigError(
                f"postprocess.options.{key}: unknown option for decoder {decoder} (valid options: {valid})"
            )
    return options


def opt_str(options: Mapping[str, Any], key: str, default: str | None) -> str | None:
    value = options.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"postprocess.options.{key}: expected an output name (a string), got {value!r}")
    return value


def opt_bool(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"postprocess.options.{key}: expected true or false, got {value!r}")
    return value


def describe(outputs: Mapping[str, np.ndarray]) -> str:
    """``loc [1, 16800, 4] float32, conf [...]`` for error messages."""
    return ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in outputs.items()) or "no outputs"


def pick(
    outputs: Mapping[str, np.ndarray],
    name: str | None,
    fits: Callable[[np.ndarray], bool],
    decoder: str,
    expected: str,
    option: str = "output",
) -> np.ndarray:
    """The output called ``name`` if given, else the only one whose shape ``fits``; a clear error otherwise."""
    if name is not None:
        if name not in outputs:
            raise ConfigError(
                f"decoder {decoder}: postprocess.options.{option} names output {name!r}, but the model's outputs are "
                f"{describe(outputs)}"
            )
        array = outputs[name]
        if not fits(array):
            raise ConfigError(f"decoder {decoder} expects {expected} for {name!r}; got {list(array.shape)}")
        return array
    found = [v for v in outputs.values() if fits(v)]
    if len(found) != 1:
        how = "none fits" if not found else f"{len(found)} fit; name one with postprocess.options.{option}"
        raise ConfigError(f"decoder {decoder} expects {expected}; got {describe(outputs)} ({how})")
    return found[0]


def check_batch(array: np.ndarray, metas: Sequence[Meta], decoder: str, what: str) -> None:
    if array.shape[0] != len(metas):
        raise ConfigError(
            f"decoder {decoder}: {what} has batch size {array.shape[0]} but {len(metas)} image(s) were preprocessed"
        )


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    """``[N, 4]`` centre/size boxes as corner boxes (float32)."""
    out = np.empty(b.shape, dtype=np.float32)
    half_w = b[:, 2] * 0.5
    half_h = b[:, 3] * 0.5
    out[:, 0] = b[:, 0] - half_w
    out[:, 1] = b[:, 1] - half_h
    out[:, 2] = b[:, 0] + half_w
    out[:, 3] = b[:, 1] + half_h
    return out


def detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    meta: Meta,
    spec: PostprocessSpec,
    keypoints: np.ndarray | None = None,
) -> Detections:
    """Boxes (and ``[N, K, 2]`` keypoints) in network pixels as :class:`Detections` in original pixels."""
    kp = None
    if keypoints is not None:
        n, k = keypoints.shape[:2]
        kp = meta.to_original(keypoints.reshape(n, 2 * k)).reshape(n, k, 2)
    return Detections(
        meta.to_original(boxes).reshape(-1, 4),
        np.ascontiguousarray(scores, dtype=np.float32),
        np.ascontiguousarray(class_ids, dtype=np.int64),
        spec.labels,
        kp,
    )


def pick_default(
    outputs: Mapping[str, np.ndarray],
    options: Mapping[str, Any],
    option: str,
    default: str,
    fits: Callable[[np.ndarray], bool],
    decoder: str,
    expected: str,
) -> np.ndarray:
    """Like :func:`pick`, where an output conventionally called ``default`` is taken by that name first."""
    name = opt_str(options, option, None)
    if name is None and default in outputs and fits(outputs[default]):
        name = default
    return pick(outputs, name, fits, decoder, expected, option)


def is_probabilities(x: np.ndarray, axis: int = -1) -> bool:
    """True when ``x`` already holds probabilities along ``axis`` (in [0, 1], summing to 1)."""
    if x.size == 0:
        return True
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        return False
    return bool(np.allclose(x.sum(axis=axis, dtype=np.float64), 1.0, atol=1e-3))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True), dtype=np.float32)
    e /= e.sum(axis=axis, keepdims=True)
    return e
