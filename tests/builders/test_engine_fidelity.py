"""Builder paths against NVIDIA's documented API (issue 10, items 5 and 7).

- TensorRT 8.6 (JetPack 6.0) lacks ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` and
  ``IProgressMonitor``: it is refused in one line naming the version. TensorRT 8.6 cannot be installed
  here, so ``TensorRT86`` stands in for its module: it models only the absence of those two names (and
  fails the test loudly if the builder touched anything else first).
- ``REQUIRE_USER_ALLOCATION`` (CUDA-graph-capturable plans) is set on real TensorRT-RTX builds unless the
  network has data-dependent shapes, where TensorRT-RTX would refuse to build with it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx
import onnx.helper as oh
import pytest

from builders.engine_common import EngineBuild, EngineRequest
from edge.errors import BuildError

needs_rtx = pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None, reason="tensorrt_rtx not installed")


class TensorRT86:
    """The names TensorRT 8.6.2's module has that matter here: no STRONGLY_TYPED, no IProgressMonitor."""

    __name__ = "tensorrt"
    __version__ = "8.6.2"

    class NetworkDefinitionCreationFlag:
        EXPLICIT_BATCH = 0
        EXPLICIT_PRECISION = 1

    def __getattr__(self, name: str) -> object:
        if name == "IProgressMonitor":
            raise AttributeError(name)  # what 8.6's module answers
        raise AssertionError(f"the builder used trt.{name} before refusing TensorRT 8.6")


def test_tensorrt_8_6_is_refused_in_one_line(tmp_path: Path) -> None:
    request = EngineRequest(tmp_path / "m.onnx", tmp_path / "m.plan", label="jetson-orin-nano-8gb")
    with pytest.raises(BuildError) as info:
        EngineBuild(TensorRT86(), request)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("TensorRT 8.6.2 has no strongly typed networks and no IProgressMonitor")
    assert "JetPack 6.1" in message
    assert not (tmp_path / "m.plan").exists()


def _relu_onnx(tmp_path: Path) -> Path:
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    model = oh.make_model(
        oh.make_graph([oh.make_node("Relu", ["x"], ["y"])], "g", [x], [y]), opset_imports=[oh.make_opsetid("", 17)]
    )
    model.ir_version = 8
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    return path


@needs_rtx
def test_rtx_plans_require_user_allocation(tmp_path: Path) -> None:
    import tensorrt_rtx

    from builders.engine_rtx import build_rtx, require_user_allocation

    onnx_path = _relu_onnx(tmp_path)
    build = EngineBuild(tensorrt_rtx, EngineRequest(onnx_path, tmp_path / "probe.plan"))
    assert require_user_allocation(tensorrt_rtx, build.network, build.config) is True
    assert build.config.get_flag(tensorrt_rtx.BuilderFlag.REQUIRE_USER_ALLOCATION)
    plan = build_rtx(EngineRequest(onnx_path, tmp_path / "m.plan", label="rtx"), ["8.6"])
    assert plan.cuda_graph_ready and plan.size == (tmp_path / "m.plan").stat().st_size > 0


@needs_rtx
def test_data_dependent_shapes_leave_user_allocation_off() -> None:
    """A network with an INonZeroLayer (made with TensorRT-RTX's network API: its ONNX parser has no
    NonZero importer) must not get the flag, with which TensorRT-RTX refuses such networks."""
    import tensorrt_rtx

    from builders.engine_common import make_logger
    from builders.engine_rtx import require_user_allocation

    builder = tensorrt_rtx.Builder(make_logger(tensorrt_rtx))
    network = builder.create_network(0)
    x = network.add_input("x", tensorrt_rtx.float32, (1, 4))
    network.mark_output(network.add_non_zero(x).get_output(0))
    config = builder.create_builder_config()
    assert require_user_allocation(tensorrt_rtx, network, config) is False
    assert not config.get_flag(tensorrt_rtx.BuilderFlag.REQUIRE_USER_ALLOCATION)
