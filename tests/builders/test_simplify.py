"""Stage 2: onnxslim on real models, agreement through ONNX Runtime, and falling back instead of failing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from builders.onnx_load import describe_io, load_onnx
from builders.shapes import fix_shapes, ort_session
from builders.simplify import outputs_agree, simplifier_name, simplify

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def test_retinaface_at_a_fixed_size_folds_its_shape_arithmetic(retinaface_onnx: Path) -> None:
    model = fix_shapes(load_onnx(retinaface_onnx), {"input": (1, 3, 320, 320)})
    slim, name = simplify(model)
    assert name == simplifier_name() and name is not None and name.startswith("onnxslim ")
    ops = {n.op_type for n in slim.graph.node}
    assert "Shape" not in ops and "Gather" not in ops  # all of it was constant at a fixed size
    assert len(slim.graph.node) < 0.6 * len(model.graph.node)
    assert describe_io(slim) == describe_io(model)
    x = np.random.default_rng(0).uniform(-120, 150, (1, 3, 320, 320)).astype(np.float32)
    for a, b in zip(ort_session(model).run(None, {"input": x}), ort_session(slim).run(None, {"input": x})):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["light_squeezenet", "light_inception_v1"])
def test_light_models_lose_their_weight_generators(name: str) -> None:
    model = load_onnx(LIGHT / f"{name}.onnx")
    slim, tool = simplify(model)
    assert tool is not None
    assert not any(n.op_type == "ConstantOfShape" for n in slim.graph.node)
    assert len(slim.graph.node) < len(model.graph.node)
    assert outputs_agree(model, slim) is None


def test_dynamic_model_is_simplified_without_a_runtime_check(retinaface_onnx: Path) -> None:
    model = load_onnx(retinaface_onnx)
    slim, tool = simplify(model)
    assert tool is not None and len(slim.graph.node) < len(model.graph.node)
    assert describe_io(slim)[0][0].shape == (-1, 3, -1, -1)


def test_unverifiable_result_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    # A custom-domain op ONNX Runtime cannot run (as a TensorRT plugin node would be): nothing to check
    # the simplified graph against, so the original is kept.
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    nodes = [
        oh.make_node("Identity", ["x"], ["i"]),
        oh.make_node("Relu", ["i"], ["r"]),
        oh.make_node("Frobnicate", ["r"], ["y"], domain="com.example"),
    ]
    model = oh.make_model(
        oh.make_graph(nodes, "g", [x], [y]),
        opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.example", 1)],
    )
    with caplog.at_level(logging.WARNING, logger="builders.simplify"):
        out, tool = simplify(model)
    assert tool is None
    assert out is model
    assert "building from the unsimplified model" in caplog.text
    assert "com.example:Frobnicate" in caplog.text


def test_a_changed_result_is_reported() -> None:
    model = fix_shapes(
        oh.make_model(
            oh.make_graph(
                [oh.make_node("Relu", ["x"], ["y"])],
                "g",
                [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
                [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])],
            ),
            opset_imports=[oh.make_opsetid("", 17)],
        ),
        {"x": (2, 3)},
    )
    other = onnx.ModelProto()
    other.CopyFrom(model)
    other.graph.node[0].op_type = "Neg"
    assert outputs_agree(model, model) is None
    problem = outputs_agree(model, other)
    assert problem is not None and problem.startswith("output 'y' differs by up to")
