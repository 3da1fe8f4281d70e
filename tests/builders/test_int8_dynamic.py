"""``--precision int8-dynamic``: ONNX Runtime dynamic quantization for the ONNX artifact (int8 weights,
activations quantized at run time, no calibration), gated like the others, refused for TensorRT targets."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from builders.precision import quantize_dynamic_int8
from builders.shapes import ort_session
from edge.cli import main
from edge.errors import BuildError
from edge.manifest import read_manifest


def _mlp(hidden: int = 256, classes: int = 10) -> onnx.ModelProto:
    """An image classifier that is all MatMul: [1,3,32,32] -> flatten -> 3072x256 -> ReLU -> 256x10 -> softmax."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((3 * 32 * 32, hidden)) / np.sqrt(3 * 32 * 32)).astype(np.float32)
    w2 = (rng.standard_normal((hidden, classes)) / np.sqrt(hidden)).astype(np.float32)
    nodes = [
        oh.make_node("Flatten", ["input"], ["flat"], name="flatten"),
        oh.make_node("MatMul", ["flat", "w1"], ["h"], name="fc1"),
        oh.make_node("Relu", ["h"], ["a"], name="relu"),
        oh.make_node("MatMul", ["a", "w2"], ["logits"], name="fc2"),
        oh.make_node("Softmax", ["logits"], ["probs"], axis=1, name="softmax"),
    ]
    graph = oh.make_graph(
        nodes,
        "mlp",
        [oh.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [oh.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, [1, classes])],
        [onnx.numpy_helper.from_array(w1, "w1"), onnx.numpy_helper.from_array(w2, "w2")],
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def test_weights_go_int8_and_activations_are_quantized_at_run_time() -> None:
    model = _mlp()
    quantized = quantize_dynamic_int8(model)
    ops = [n.op_type for n in quantized.graph.node]
    assert "DynamicQuantizeLinear" in ops and ops.count("MatMulInteger") == 2
    int8_weights = [t for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sorted(int(np.prod(t.dims)) for t in int8_weights if t.dims) == [2560, 3072 * 256]  # + zero points
    assert quantized.ByteSize() < model.ByteSize() / 3  # 4-byte floats became bytes
    x = {"input": np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)}
    ref = ort_session(model).run(None, x)[0]
    got = ort_session(quantized).run(None, x)[0]
    assert got.dtype == np.float32 and got.shape == ref.shape
    cos = float(ref.ravel() @ got.ravel() / (np.linalg.norm(ref) * np.linalg.norm(got)))
    assert cos > 0.999 and int(ref.argmax()) == int(got.argmax())


def test_a_model_without_matmul_is_refused_with_the_reason() -> None:
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])
    w = onnx.numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    conv = oh.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv")
    model = oh.make_model(oh.make_graph([conv], "conv", [x], [y], [w]), opset_imports=[oh.make_opsetid("", 17)])
    with pytest.raises(BuildError, match=r"int8-dynamic: nothing to quantize .*1 Conv.*--precision int8 --calib"):
        quantize_dynamic_int8(model)


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    onnx.save(_mlp(), str(path))
    return path


def test_cli_builds_gates_and_reports_int8_dynamic(
    mlp_onnx: Path, photos_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mlp.bundle"
    args = ["build", str(mlp_onnx), "-o", str(out), "--target", "cpu", "--precision", "int8-dynamic",
            "--task", "classify", "--val", str(photos_dir), "--max-drop", "0.5"]  # fmt: skip
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert re.search(r"model      mlp \(int8-dynamic\)", stdout)
    assert re.search(r"accuracy   top1_agreement \d\.\d{4} \[95% \d\.\d{4}\.\.\d\.\d{4}\] vs FP32 on 6 samples", stdout)
    m = read_manifest(out)
    assert m.precision == "int8-dynamic" and m.calibration is None
    assert [(a.file, a.backend) for a in m.artifacts] == [("model.onnx", "onnxruntime")]
    assert m.accuracy is not None and m.accuracy["passed"] is True
    assert m.accuracy["validation"]["source"] == f"--val {photos_dir.name}"
    assert m.accuracy["candidate"] == "converted model, ONNX Runtime CPU (as the bundle runs it)"
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "cpu,rtx-ada"], r"^error: --precision int8-dynamic: target rtx-ada needs a TensorRT plan"),
        (["--target", "jetson-orin-nano-8gb"], r"^error: --precision int8-dynamic: target jetson-orin-nano-8gb"),
        (["--target", "cpu", "--calib", "."], r"^error: --calib: --precision int8-dynamic calibrates nothing"),
        (["--target", "cpu", "--max-drop", "0.1"], r"^error: --max-drop needs images to measure on: give --val DIR$"),
    ],
)
def test_int8_dynamic_refusals_are_one_line(
    mlp_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "x.bundle"
    assert main(["build", str(mlp_onnx), "-o", str(out), "--precision", "int8-dynamic", *extra]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not out.exists()
