"""Stage 2: onnxslim on real models, agreement through ONNX Runtime, and falling back instead of failing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as onh
import pytest

from builders.onnx_load import describe_io, load_onnx
from builders.shapes import fix_shapes, ort_session
from builders.simplify import (
    FOLD_FLOOR_BYTES,
    fold_limit,
    outputs_agree,
    simplifier_name,
    simplify,
    simplify_work,
    tidy,
)
from tests.models import LIGHT


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
    assert tool == "edge tidy"  # the kit's exact tidy pass (the Identity) stays; onnxslim's result does not
    assert [n.op_type for n in out.graph.node] == ["Relu", "Frobnicate"]
    assert "building from the unsimplified model" in caplog.text
    assert "com.example:Frobnicate" in caplog.text


def _untidy() -> onnx.ModelProto:
    """x -> Identity -> Dropout -> Mul(Constant 2) -> y, plus a dead Sigmoid and an unused weight."""
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    two = onnx.numpy_helper.from_array(np.full((1, 4), 2.0, np.float32))
    nodes = [
        oh.make_node("Identity", ["x"], ["i"], name="identity"),
        oh.make_node("Dropout", ["i"], ["d"], name="dropout"),
        oh.make_node("Constant", [], ["two"], value=two, name="constant"),
        oh.make_node("Mul", ["d", "two"], ["y"], name="mul"),
        oh.make_node("Sigmoid", ["y"], ["unused"], name="dead"),
    ]
    spare = onnx.numpy_helper.from_array(np.zeros(3, np.float32), "spare")
    graph = oh.make_graph(nodes, "untidy", [x], [y], [spare])
    return onnx.shape_inference.infer_shapes(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]))


def test_tidy_pass_removes_what_needs_no_simplifier() -> None:
    model = _untidy()
    tidied, removed = tidy(model)
    assert removed == 4 and [n.op_type for n in tidied.graph.node] == ["Mul"]
    assert [t.name for t in tidied.graph.initializer] == ["two"]
    assert simplify_work(model) == "1 Identity node(s)" and simplify_work(tidied) is None
    x = {"x": np.array([[1.0, -2.0, 3.5, 0.0]], np.float32)}
    np.testing.assert_array_equal(ort_session(tidied).run(None, x)[0], x["x"] * 2)
    assert tidy(tidied) == (tidied, 0)  # nothing left: the same object back


def test_fp32_leaves_onnxslim_out_and_a_clean_graph_skips_it(
    retinaface_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = load_onnx(retinaface_onnx)
    with caplog.at_level(logging.INFO, logger="builders.simplify"):
        tidied, tool = simplify(model, slim=False)
    assert tool == "edge tidy" and "onnxslim skipped for fp32" in caplog.text
    assert not any(n.op_type in ("Constant", "Identity") for n in tidied.graph.node)
    clean = _untidy()
    clean, _ = tidy(clean)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="builders.simplify"):
        same, tool = simplify(clean)
    assert same is clean and tool is None and "nothing to simplify after the tidy pass" in caplog.text


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


def _const_model(initializer: np.ndarray, constant: np.ndarray) -> onnx.ModelProto:
    nodes = [
        oh.make_node("Constant", [], ["c"], value=onh.from_array(constant, "c")),
        oh.make_node("Add", ["x", "w"], ["s"]),
        oh.make_node("Add", ["s", "c"], ["y"]),
    ]
    graph = oh.make_graph(
        nodes,
        "g",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onh.from_array(initializer, "w")],
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("initializer", "constant", "limit"),
    [
        (np.zeros(4, np.float32), np.zeros(4, np.float32), FOLD_FLOOR_BYTES),  # small model: the floor
        (np.zeros(5 << 18, np.float32), np.zeros(4, np.float32), 5 << 20),  # a 5 MiB initializer
        (np.zeros(4, np.float32), np.zeros(3 << 20, np.float16), 6 << 20),  # a 6 MiB Constant node
    ],
    ids=["floor", "initializer", "constant-node"],
)
def test_fold_limit_is_the_largest_stored_tensor_or_the_floor(
    initializer: np.ndarray, constant: np.ndarray, limit: int
) -> None:
    assert fold_limit(_const_model(initializer, constant)) == limit


def test_generated_weights_over_the_limit_stay_generator_nodes(resnet50_onnx: Path) -> None:
    # The light ResNet-50 makes its weights with ConstantOfShape: folding them all would write ~100 MB.
    model = load_onnx(resnet50_onnx)
    assert fold_limit(model) == FOLD_FLOOR_BYTES
    slim, tool = simplify(model)
    assert tool is not None
    inits = {t.name: onh.to_array(t) for t in slim.graph.initializer}
    generated = [
        int(np.prod(inits[n.input[0]])) * onh.to_array(n.attribute[0].t).itemsize
        for n in slim.graph.node
        if n.op_type == "ConstantOfShape"
    ]
    assert generated and min(generated) > FOLD_FLOOR_BYTES  # only the big ones were left
    assert max(a.nbytes for a in inits.values()) <= FOLD_FLOOR_BYTES  # the small ones were folded
    assert slim.ByteSize() < 60e6 and len(slim.graph.node) < 0.4 * len(model.graph.node)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    (a,) = ort_session(model).run(None, {"gpu_0/data_0": x})
    (b,) = ort_session(slim).run(None, {"gpu_0/data_0": x})
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
