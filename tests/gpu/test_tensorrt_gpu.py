"""TensorRT-RTX and classic TensorRT plans on a real GPU vs ONNX Runtime (skipped without one).

Run on hardware: ``pytest tests/gpu -m gpu -v`` (see docs/runtime.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.backends import cuda
from edge.cli import main
from edge.runtime import load
from tests.gpu.conftest import CUDA_OK, requires_gpu
from tests.runtime.bundles import photo, plan_artifact, retinaface_onnx, rtx_plan, write_bundle

pytestmark = [pytest.mark.gpu, requires_gpu]

RTX_CCS = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")


def _cc() -> str:
    return cuda.device_info(0).compute_capability if CUDA_OK else "none"


def _rtx_version() -> str | None:
    try:
        import tensorrt_rtx
    except ImportError:
        return None
    return str(tensorrt_rtx.__version__)


def _classic_version() -> str | None:
    try:
        import tensorrt
    except ImportError:
        return None
    return str(tensorrt.__version__) if hasattr(tensorrt, "Runtime") else None


def _ort_faces(bundle: Path) -> np.ndarray:
    with load(bundle, "onnxruntime-cpu", warmup=0) as model:
        return model.predict(photo("astronaut")).boxes


@pytest.fixture(scope="module")
def rtx_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    version = _rtx_version()
    if version is None:
        pytest.skip("tensorrt_rtx is not installed")
    if _cc() not in RTX_CCS:
        pytest.skip(f"TensorRT-RTX does not support this GPU (sm {_cc()}); it targets sm {', '.join(RTX_CCS)}")
    data = rtx_plan(retinaface_onnx(), ccs=(_cc(),))
    art, _ = plan_artifact(f"engine-sm{_cc()}.plan", ccs=(_cc(),), version=version, data=data)
    return write_bundle(tmp_path_factory.mktemp("gpu") / "rtx.bundle", plans=[(art, data)])


def test_rtx_plan_runs_and_agrees_with_onnxruntime(rtx_bundle: Path, tmp_path: Path) -> None:
    with load(rtx_bundle, state_dir=tmp_path) as model:
        assert model.backend_name == "tensorrt-rtx"
        boxes = model.predict(photo("astronaut")).boxes
        assert {"h2d", "compute", "d2h"} <= set(model.timings)
        assert not model.backend.cache_loaded  # type: ignore[attr-defined]
    np.testing.assert_allclose(boxes, _ort_faces(rtx_bundle), atol=2.0)
    caches = list((tmp_path / "tensorrt-rtx").glob("*.cache"))
    assert len(caches) == 1 and caches[0].stat().st_size > 0
    with load(rtx_bundle, state_dir=tmp_path) as again:  # the second start reads the saved cache
        assert again.backend.cache_loaded  # type: ignore[attr-defined]


def test_rtx_batch_and_shape_changes(rtx_bundle: Path, tmp_path: Path) -> None:
    images = [photo(n) for n in ("astronaut", "camera", "grace_hopper", "chelsea")]
    with load(rtx_bundle, state_dir=tmp_path) as model:
        results = model.predict_batch(images)
        singles = [model.predict(i) for i in images]
    assert [len(r) for r in results] == [1, 1, 1, 0]
    for r, s in zip(results, singles):
        np.testing.assert_allclose(r.boxes, s.boxes, atol=2.0)


def test_doctor_compares_the_plan(rtx_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", str(rtx_bundle), "--rtol", "0.05", "--atol", "0.05"]) == 0
    assert "on tensorrt-rtx: ok" in capsys.readouterr().out


def test_classic_tensorrt_with_data_dependent_output(tmp_path: Path) -> None:
    """An ONNX NonMaxSuppression (data-dependent output shape) through classic TensorRT's output allocator."""
    version = _classic_version()
    if version is None:
        pytest.skip("classic TensorRT is not installed")
    import tensorrt as trt
    from onnx import TensorProto, helper

    from edge.backends.tensorrt import TensorRTBackend
    from edge.manifest import TensorSpec

    max_out = helper.make_tensor("max_out", TensorProto.INT64, [1], [10])
    iou = helper.make_tensor("iou", TensorProto.FLOAT, [1], [0.5])
    graph = helper.make_graph(
        [helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou"], ["selected"])],
        "nms",
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 6, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 6]),
        ],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, ["K", 3])],
        initializer=[max_out, iou],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    from edge.backends.trt_logger import process_logger

    logger = process_logger(trt)  # TensorRT keeps one logger per process: the kit's
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(model.SerializeToString())
    plan = builder.build_serialized_network(network, builder.create_builder_config())
    art, data = plan_artifact("nms.plan", backend="tensorrt", ccs=(_cc(),), version=version, data=bytes(plan))
    boxes = np.array(
        [[[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10], [100, 0, 110, 10], [51, 51, 61, 61]]],
        np.float32,
    )
    scores = np.array([[[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]]], np.float32)
    specs = [TensorSpec("boxes", "float32", (1, 6, 4)), TensorSpec("scores", "float32", (1, 1, 6))]
    with TensorRTBackend(data, specs, [TensorSpec("selected", "int64", (-1, 3))], artifact=art) as backend:
        out = backend.infer({"boxes": boxes, "scores": scores})["selected"]
    assert out[:, 2].tolist() == [0, 2, 4]  # boxes 1, 3 and 5 overlap a better one
