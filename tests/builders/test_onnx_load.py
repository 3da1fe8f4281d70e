"""Stage 1: loading real ONNX files (RetinaFace, onnx's light models) and every way a file can be wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from builders.onnx_load import describe_io, diagnose_bytes, load_onnx
from edge.errors import BuildError
from edge.manifest import TensorSpec
from tests.models import LIGHT


def test_retinaface_io_has_dynamic_axes(retinaface_onnx: Path) -> None:
    inputs, outputs = describe_io(load_onnx(retinaface_onnx))
    assert inputs == [TensorSpec("input", "float32", (-1, 3, -1, -1))]
    assert [o.name for o in outputs] == ["loc", "conf", "landmarks"]
    assert all(o.dtype == "float32" and len(o.shape) == 3 for o in outputs)


@pytest.mark.parametrize(
    ("name", "input_name", "output"),
    [
        ("resnet50", "gpu_0/data_0", TensorSpec("gpu_0/softmax_1", "float32", (1, 1000))),
        ("squeezenet", "data_0", TensorSpec("softmaxout_1", "float32", (1, 1000, 1, 1))),
    ],
)
def test_old_exporter_initializer_inputs_are_removed(name: str, input_name: str, output: TensorSpec) -> None:
    path = LIGHT / f"light_{name}.onnx"
    raw = onnx.load(str(path))
    assert len(raw.graph.input) > 1  # the quirk: every weight-shape initializer is also a graph input
    model = load_onnx(path)
    inputs, outputs = describe_io(model)
    assert inputs == [TensorSpec(input_name, "float32", (1, 3, 224, 224))]
    assert [i.name for i in model.graph.input] == [input_name]
    assert outputs == [output]
    assert len(model.graph.value_info) > 0  # shape inference ran


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, rf: d / "missing.onnx", "ONNX file not found"),
        (lambda d, rf: d, "is a directory"),
        (lambda d, rf: _write(d / "empty.onnx", b""), "the file is empty"),
        (lambda d, rf: _write(d / "text.onnx", b"hello, this is not a model\n"), "not an ONNX model"),
        (lambda d, rf: _write(d / "json.onnx", b'{"graph": []}'), "not an ONNX model"),
        (lambda d, rf: _write(d / "png.onnx", b"\x89PNG\r\n\x1a\n" + b"\0" * 64), "not an ONNX model"),
        (lambda d, rf: _write(d / "half.onnx", rf[: len(rf) // 2]), "truncated"),
        (lambda d, rf: _write(d / "tail.onnx", rf[:-7]), "truncated"),
    ],
    ids=["missing", "directory", "empty", "text", "json", "png", "half", "tail"],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, retinaface_onnx: Path, make: object, message: str) -> None:
    path = make(tmp_path, retinaface_onnx.read_bytes())  # type: ignore[operator]
    with pytest.raises(BuildError, match=message) as info:
        load_onnx(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_diagnose_tells_truncated_from_foreign(retinaface_onnx: Path) -> None:
    data = retinaface_onnx.read_bytes()
    assert diagnose_bytes(data[:1000]).startswith("truncated")
    assert diagnose_bytes(b"GIF89a....").startswith("not an ONNX model")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),  # its first bytes parse as a long protobuf tag
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"PK\x03\x04", "a ZIP archive (a PyTorch .pt checkpoint is one: export it to ONNX first)"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "a WebP image"),
    ],
)
def test_a_foreign_file_is_named(head: bytes, kind: str) -> None:
    assert diagnose_bytes(head + bytes(range(256)) * 4) == f"not an ONNX model (it is {kind})"


def test_a_real_jpeg_as_model_says_not_an_onnx_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main

    photo = Path(__file__).resolve().parents[1] / "data" / "models" / "coffee.jpg"
    if not photo.is_file():
        pytest.skip("tests/data/models/coffee.jpg is not there")
    assert main(["build", str(photo), "-o", str(tmp_path / "x.bundle"), "--target", "cpu"]) == 3
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"error: {photo}: not an ONNX model (it is a JPEG image); give the path of an exported .onnx model"]
    assert not (tmp_path / "x.bundle").exists()


def test_checker_failure_is_a_build_error(tmp_path: Path) -> None:
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = oh.make_graph([oh.make_node("Add", ["x", "nowhere"], ["y"])], "g", [x], [y])
    path = tmp_path / "dangling.onnx"
    path.write_bytes(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(BuildError, match="checker rejects"):
        load_onnx(path)


def test_external_data_is_checked_and_loaded(tmp_path: Path, retinaface_onnx: Path) -> None:
    model = onnx.load(str(retinaface_onnx))
    original = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.data", size_threshold=0)
    assert path.stat().st_size < 200_000 < (tmp_path / "ext.data").stat().st_size
    loaded = load_onnx(path)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in loaded.graph.initializer}
    assert weights.keys() == original.keys()
    assert all(np.array_equal(weights[k], original[k]) for k in original)
    (tmp_path / "ext.data").rename(tmp_path / "moved.data")
    with pytest.raises(BuildError, match="external data file 'ext.data' is missing"):
        load_onnx(path)


def test_operator_tensorrt_lacks_is_left_to_the_engine_parser(unsupported_onnx: Path) -> None:
    # Det is valid ONNX: loading accepts it; TensorRT's parser reports it (builders.engine_* tests).
    inputs, outputs = describe_io(load_onnx(unsupported_onnx))
    assert [n.op_type for n in load_onnx(unsupported_onnx).graph.node] == ["Relu", "Det"]
    assert inputs[0].shape == (1, 3, 4, 4) and outputs[0].shape == (1, 3)


def _nms_model(second_input: str) -> onnx.ModelProto:
    """Relu, then TensorRT's EfficientNMS_TRT plugin in the DEFAULT domain, as graphsurgeon exports write it."""
    boxes = oh.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, [1, 100, 4])
    scores = oh.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [1, 100, 80])
    outputs = [
        oh.make_tensor_value_info("num_detections", onnx.TensorProto.INT32, [1, 1]),
        oh.make_tensor_value_info("detection_boxes", onnx.TensorProto.FLOAT, [1, 100, 4]),
    ]
    nodes = [
        oh.make_node("Relu", ["boxes"], ["b"]),
        oh.make_node("EfficientNMS_TRT", ["b", second_input], ["num_detections", "detection_boxes"], name="nms"),
    ]
    return oh.make_model(oh.make_graph(nodes, "nms", [boxes, scores], outputs), opset_imports=[oh.make_opsetid("", 17)])


def test_tensorrt_plugin_op_in_the_default_domain_is_accepted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "nms.onnx"
    onnx.save(_nms_model("scores"), str(path))
    with caplog.at_level("WARNING", logger="builders.onnx_load"):
        model = load_onnx(path)
    assert "EfficientNMS_TRT are not standard ONNX: left to TensorRT" in caplog.text
    assert [(n.op_type, n.domain) for n in model.graph.node] == [("Relu", ""), ("EfficientNMS_TRT", "")]
    assert [o.dtype for o in describe_io(model)[1]] == ["int32", "float32"]
    onnx.save(_nms_model("nowhere"), str(path))  # the rest of the graph is still checked
    with pytest.raises(BuildError, match="checker rejects"):
        load_onnx(path)


@pytest.mark.parametrize(("opset", "stamped", "expected"), [(17, 14, 8), (21, 14, 10), (11, 6, 6), (17, 7, 7)])
def test_ir_version_is_lowered_to_what_the_opsets_need(tmp_path: Path, opset: int, stamped: int, expected: int) -> None:
    """onnx stamps its newest IR version on new models; ONNX Runtime 1.23 (Python 3.10, JetPack 6) refuses
    IR > 11. Loading lowers the stamp to the opsets' minimum (never raises it), and ONNX Runtime runs it."""
    import onnxruntime as ort

    graph = oh.make_graph(
        [oh.make_node("Relu", ["x"], ["y"])],
        "g",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = stamped
    path = tmp_path / "relu.onnx"
    onnx.save(model, path)
    loaded = load_onnx(path)
    assert loaded.ir_version == expected
    session = ort.InferenceSession(loaded.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.array([[-1, 2, -3, 4]], np.float32)})
    assert y.tolist() == [[0, 2, 0, 4]]
