"""The ONNX Runtime backend on real models: run vs IO binding, threads, provider checks, load errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.backends.onnxruntime import OnnxRuntimeBackend, available_providers
from edge.errors import EngineError
from tests.runtime.bundles import retinaface_onnx


@pytest.fixture(scope="module")
def retinaface(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ort") / "retinaface.onnx"
    path.write_bytes(retinaface_onnx())
    return path


def test_io_binding_and_threads_agree_with_plain_run(retinaface: Path) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 128)).astype(np.float32)
    with OnnxRuntimeBackend(retinaface) as plain:
        ref = plain.infer({"input": x})
        assert plain.describe() == "onnxruntime (CPU)"
    with OnnxRuntimeBackend(retinaface, io_binding=True, intra_op_threads=1) as bound:
        out = bound.infer({"input": x})
    assert list(out) == ["loc", "conf", "landmarks"]
    assert out["loc"].shape == (2, (12 * 16 + 6 * 8 + 3 * 4) * 2, 4)
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-5)


def test_specs_come_from_the_session(retinaface: Path) -> None:
    with OnnxRuntimeBackend(retinaface) as backend:
        assert [(t.name, t.dtype, t.shape) for t in backend.inputs] == [("input", "float32", (-1, 3, -1, -1))]
        assert [t.name for t in backend.outputs] == ["loc", "conf", "landmarks"]


@pytest.mark.skipif("CUDAExecutionProvider" in available_providers(), reason="this onnxruntime has CUDA")
def test_required_gpu_provider_that_does_not_start(retinaface: Path) -> None:
    backend = OnnxRuntimeBackend(
        retinaface, providers=("CUDAExecutionProvider", "CPUExecutionProvider"), require_provider=True
    )
    with pytest.raises(EngineError, match="CUDAExecutionProvider did not start"):
        backend.load()


@pytest.mark.skipif("CUDAExecutionProvider" in available_providers(), reason="this onnxruntime has CUDA")
def test_preferred_gpu_provider_falls_back_to_cpu(retinaface: Path) -> None:
    with OnnxRuntimeBackend(retinaface, providers=("CUDAExecutionProvider", "CPUExecutionProvider")) as backend:
        assert backend.active_providers[0] == "CPUExecutionProvider"


def test_unloadable_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(EngineError, match=r"onnxruntime: cannot load .*bad.onnx"):
        OnnxRuntimeBackend(bad).load()


def test_inference_error_inside_the_graph(tmp_path: Path) -> None:
    """A shape the graph cannot take (a reshape to 2x2 of 5 values) is an EngineError, not a crash."""
    import onnx
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [2, 2])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "reshape.onnx"
    onnx.save(model, path)
    with OnnxRuntimeBackend(path) as backend:
        assert backend.infer({"x": np.arange(4, dtype=np.float32)})["y"].shape == (2, 2)
        with pytest.raises(EngineError, match="onnxruntime: inference failed"):
            backend.infer({"x": np.arange(5, dtype=np.float32)})
