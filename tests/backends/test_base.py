"""The backend base class: lifecycle, input checks and timing, exercised through the real ONNX Runtime backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.backends.base import check_shape
from edge.backends.onnxruntime import OnnxRuntimeBackend
from edge.errors import ConfigError, EngineError
from edge.manifest import TensorSpec
from tests.runtime.bundles import add_one_onnx

X = TensorSpec("x", "float32", (-1, 4), {"min": (1, 4), "opt": (2, 4), "max": (8, 4)})
Y = TensorSpec("y", "float32", (-1, 4))


@pytest.fixture()
def add_one(tmp_path: Path) -> Path:
    path = tmp_path / "add_one.onnx"
    path.write_bytes(add_one_onnx())
    return path


# (id, feeds, error fragment or None for a good call)
CASES = [
    ("good", {"x": np.zeros((3, 4), np.float32)}, None),
    ("non-contiguous-is-fine", {"x": np.zeros((4, 8), np.float32)[:, ::2]}, None),
    ("profile-max", {"x": np.zeros((8, 4), np.float32)}, None),
    ("wrong-dtype", {"x": np.zeros((3, 4), np.float64)}, "input 'x' has dtype float64, expected float32"),
    ("wrong-rank", {"x": np.zeros((4,), np.float32)}, "has shape [4] (rank 1), expected [?, 4] (rank 2)"),
    ("wrong-axis", {"x": np.zeros((3, 5), np.float32)}, "has shape [3, 5], expected [?, 4] (axis 1)"),
    ("empty-axis", {"x": np.zeros((0, 4), np.float32)}, "empty axis 0"),
    ("over-profile", {"x": np.zeros((9, 4), np.float32)}, "outside the bundle's optimization profile [1, 4]..[8, 4]"),
    ("unknown-name", {"x": np.zeros((3, 4), np.float32), "z": np.zeros(1)}, "(unknown ['z'])"),
    ("missing-name", {}, "(missing ['x'])"),
    ("not-an-array", {"x": [[1.0, 2.0, 3.0, 4.0]]}, "must be a numpy array in host memory, got list"),
]


@pytest.mark.parametrize(("feeds", "error"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_input_checks(add_one: Path, feeds: dict, error: str | None) -> None:
    with OnnxRuntimeBackend(add_one, [X], [Y]) as backend:
        if error is None:
            out = backend.infer(feeds)
            np.testing.assert_array_equal(out["y"], np.asarray(feeds["x"]) + 1)
            assert backend.timings["infer"] > 0
        else:
            with pytest.raises(ConfigError) as info:
                backend.infer(feeds)
            assert error in str(info.value)
            assert "onnxruntime" in str(info.value)


def test_feeds_must_be_a_mapping(add_one: Path) -> None:
    with OnnxRuntimeBackend(add_one, [X], [Y]) as backend, pytest.raises(ConfigError, match="must be a dict"):
        backend.infer(np.zeros((1, 4), np.float32))  # type: ignore[arg-type]


def test_lifecycle(add_one: Path) -> None:
    backend = OnnxRuntimeBackend(add_one, [X], [Y])
    assert not backend.loaded
    out = backend.infer({"x": np.ones((1, 4), np.float32)})  # loads on first use
    assert backend.loaded and backend.calls == 1
    assert out["y"].tolist() == [[2.0, 2.0, 2.0, 2.0]]
    assert [t.name for t in backend.inputs] == ["x"] and backend.inputs[0].profile == X.profile
    backend.close()
    backend.close()
    assert not backend.loaded
    with pytest.raises(EngineError, match="backend was closed"):
        backend.infer({"x": np.ones((1, 4), np.float32)})
    with pytest.raises(EngineError, match="backend was closed"):
        backend.load()


def test_manifest_that_disagrees_with_the_model(add_one: Path) -> None:
    wrong_in = TensorSpec("images", "float32", (-1, 4))
    with pytest.raises(EngineError, match="the model's inputs x differ from the manifest's images"):
        OnnxRuntimeBackend(add_one, [wrong_in], [Y]).load()
    with pytest.raises(EngineError, match=r"input 'x' has shape \[-1, 4\] in the model but \[-1, 5\] in the manifest"):
        OnnxRuntimeBackend(add_one, [TensorSpec("x", "float32", (-1, 5))], [Y]).load()
    wrong_out = TensorSpec("scores", "float32", (-1, 4))
    with pytest.raises(EngineError, match=r"no output\(s\) scores listed in the manifest \(it has y\)"):
        OnnxRuntimeBackend(add_one, [X], [wrong_out]).load()


def test_check_shape_without_profile() -> None:
    spec = TensorSpec("x", "float32", (1, 3, -1, -1))
    check_shape(spec, (1, 3, 7, 9000))
    with pytest.raises(ConfigError, match="axis 0"):
        check_shape(spec, (2, 3, 7, 7))
