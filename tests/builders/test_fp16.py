"""FP16 on real exports (tests/data/models, Ultralytics' own exporter): shape and index computation keep their
types, only float compute is converted, inputs/outputs stay FP32, and the outputs agree with the FP32 model run
by ONNX Runtime (the reference) on a real photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from builders.fp16 import FLOAT, HALF, missing_kernel, shape_tensors, tensor_types
from builders.onnx_load import describe_io, load_onnx
from builders.precision import name_nodes, to_fp16
from builders.shapes import ort_session
from builders.simplify import simplify

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"
# name -> shapes to run (a dynamic export runs at two sizes and batch 2)
EXPORTS = {
    "yolov8n-detect-dyn": [(1, 3, 256, 256), (2, 3, 192, 320)],
    "yolov8n-detect-static": [(1, 3, 224, 224)],
    "yolo11n-detect": [(1, 3, 256, 256)],
    "yolov10n-detect": [(1, 3, 256, 256)],
    "yolov5nu-detect": [(1, 3, 256, 256)],
    "yolov8n-detect-nms": [(1, 3, 256, 256)],
    "yolov8n-seg": [(1, 3, 256, 256), (2, 3, 320, 192)],
    "yolov8n-pose": [(1, 3, 256, 256)],
    "yolov8n-obb": [(1, 3, 256, 256)],
    "yolov8n-cls": [(1, 3, 96, 96)],
}


def _export(name: str) -> Path:
    path = MODELS / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is not there (tests/data/models/make_models.py makes it)")
    return path


def _photo(shape: tuple[int, ...]) -> np.ndarray:
    import cv2

    n, _, h, w = shape
    image = cv2.imread(str(MODELS / "coffee.jpg"))
    assert image is not None
    x = cv2.resize(image, (w, h))[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    return np.ascontiguousarray(np.repeat(x, n, axis=0))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a64 @ b64 / max(np.linalg.norm(a64) * np.linalg.norm(b64), 1e-30))


def _end_to_end_recall(ref: np.ndarray, got: np.ndarray, top: int = 30) -> float:
    """Share of the reference's ``top`` best rows (x1 y1 x2 y2 score class) that ``got`` has too (IoU >= 0.5)."""
    ref = ref[np.argsort(-ref[:, 4])][:top]
    found = 0
    for row in ref:
        same = got[got[:, 5] == row[5]]
        lt, rb = np.maximum(row[:2], same[:, :2]), np.minimum(row[2:4], same[:, 2:4])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        union = np.prod(row[2:4] - row[:2]) + np.prod(same[:, 2:4] - same[:, :2], axis=1) - inter
        found += bool(np.any(inter / np.maximum(union, 1e-9) >= 0.5))
    return found / len(ref)


@pytest.mark.parametrize("simplified", [True, False], ids=["simplified", "no-simplify"])
@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_fp16_converts_real_exports(name: str, simplified: bool) -> None:
    model = load_onnx(_export(name))
    if simplified:
        model, _ = simplify(model)
    half = to_fp16(model)
    assert describe_io(half) == describe_io(model)  # FP32 in, FP32 out

    # Shape and index computation keeps its types: every integer tensor of the original has its type
    # still, and the float tensors computed from shapes alone (anchor grids) stay FP32.
    named = onnx.ModelProto()
    named.CopyFrom(model)
    name_nodes(named)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    before, after = tensor_types(named, opset), tensor_types(half, opset)
    for tensor, elem in before.items():
        if tensor in after and elem not in (FLOAT, HALF):
            assert after[tensor] == elem, tensor
    weights = {t.name for t in named.graph.initializer}
    for tensor in shape_tensors(named) - weights:
        if before.get(tensor) == FLOAT and tensor in after:
            assert after[tensor] == FLOAT, tensor
    for node in half.graph.node:
        if node.op_type == "Range":
            assert all(after.get(i) != HALF for i in node.input), node.name
    # ... while the convolutions compute in FP16.
    assert all(after[n.input[1]] == HALF for n in half.graph.node if n.op_type == "Conv")

    ref, got = ort_session(model), ort_session(half)
    feed = ref.get_inputs()[0].name
    for shape in EXPORTS[name]:
        x = {feed: _photo(shape)}
        for spec, a, b in zip(ref.get_outputs(), ref.run(None, x), got.run(None, x)):
            assert a.shape == b.shape and b.dtype == np.float32, spec.name
            if a.ndim == 3 and a.shape[-1] == 6:  # end-to-end rows: a selection, compared as detections
                assert _end_to_end_recall(a[0], b[0]) >= 0.9, spec.name
            else:
                # FP16 rounding drifts through these random-weight nets (cosine 0.9990..0.99999 measured,
                # a converter bug such as a mis-typed weight gives ~0.6): bounds with room for that drift.
                error, peak = np.abs(a - b), np.abs(a).max()
                assert _cosine(a, b) > 0.998, (spec.name, shape)
                assert error.sum() <= 0.05 * np.abs(a).sum() and error.max() <= 0.1 * peak, (spec.name, shape)


def test_fp16_yolo_dynamic_builds_for_cpu_and_rtx(tmp_path: Path) -> None:
    """The issue's reproduction: a stock dynamic YOLOv8 export, `--precision fp16`, CPU and TensorRT-RTX."""
    from edge.cli import main

    out = tmp_path / "yolo.bundle"
    code = main(
        [
            "build",
            str(_export("yolov8n-detect-dyn")),
            "-o",
            str(out),
            "--target",
            "cpu,rtx-ada",
            "--precision",
            "fp16",
            "--min-shapes",
            "images:1x3x192x192",
            "--opt-shapes",
            "images:1x3x256x256",
            "--max-shapes",
            "images:2x3x320x320",
        ]
    )
    assert code == 0
    assert (out / "model.onnx").is_file() and (out / "engine-rtx-ada.plan").stat().st_size > 0


def _shape_chain() -> onnx.ModelProto:
    """y = x * grid, the grid built from x's width with Shape -> Cast(float) -> Range -> Cast(int) -> Cast(float)."""
    nodes = [
        oh.make_node("Shape", ["x"], ["s"], start=1, end=2, name="shape"),
        oh.make_node("Squeeze", ["s"], ["w"], name="squeeze"),
        oh.make_node("Cast", ["w"], ["wf"], to=FLOAT, name="to_float"),
        oh.make_node("Range", ["zero", "wf", "one"], ["steps"], name="range"),
        oh.make_node("Mul", ["steps", "half_step"], ["grid"], name="grid"),
        oh.make_node("Mul", ["x", "grid"], ["scaled"], name="compute"),
        oh.make_node("ReduceMax", ["scaled"], ["peak"], keepdims=0, name="peak"),
        oh.make_node("Cast", ["peak"], ["index"], to=onnx.TensorProto.INT64, name="to_index"),
        oh.make_node("Relu", ["scaled"], ["y"], name="relu"),
    ]
    consts = [
        onnx.numpy_helper.from_array(np.array(v, np.float32), n)
        for n, v in (("zero", 0.0), ("one", 1.0), ("half_step", 0.5))
    ]
    graph = oh.make_graph(
        nodes,
        "shape_chain",
        [oh.make_tensor_value_info("x", FLOAT, [1, "w"])],
        [
            oh.make_tensor_value_info("y", FLOAT, [1, "w"]),
            oh.make_tensor_value_info("index", onnx.TensorProto.INT64, []),
        ],
        consts,
    )
    return onnx.shape_inference.infer_shapes(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]))


def test_fp16_leaves_the_shape_subgraph_alone() -> None:
    """A hand-made chain: the Range and the grid from the input's width stay FP32, the compute goes FP16,
    the float -> int64 Cast reads FP32 (its index must not move)."""
    model = _shape_chain()
    half = to_fp16(model)
    types = tensor_types(half, 17)
    assert types["wf"] == types["steps"] == types["grid"] == FLOAT
    assert types["scaled"] == HALF and types["y"] == FLOAT and types["index"] == onnx.TensorProto.INT64
    assert types["peak"] == FLOAT  # index computation: the float feeding a Cast to int stays FP32
    x = np.linspace(-3, 5, 7, dtype=np.float32)[None]
    y, index = ort_session(half).run(None, {"x": x})
    grid = np.arange(7, dtype=np.float32) * 0.5
    np.testing.assert_allclose(y, np.maximum(x * grid, 0), rtol=1e-3)
    assert index == int(np.max(x * grid))


def test_missing_kernel_names_the_node() -> None:
    message = (
        "[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for Foo(19) node with name 'n1'"
    )
    assert missing_kernel(message) == ("Foo", "n1")
    assert missing_kernel("something else") is None


def test_fp16_io_when_asked(tmp_path: Path) -> None:
    """``--fp16-io``: float16 inputs and outputs, the preprocess feeds float16, and the outputs still agree."""
    from edge.cli import main
    from edge.manifest import read_manifest

    path = _export("yolov8n-detect-dyn")
    model = load_onnx(path)
    half = to_fp16(model, fp16_io=True)
    (inp,), (out,) = describe_io(half)
    assert (inp.dtype, out.dtype) == ("float16", "float16")
    x = _photo((1, 3, 256, 256))
    ref = ort_session(model).run(None, {"images": x})[0]
    got = ort_session(half).run(None, {"images": x.astype(np.float16)})[0]
    assert got.dtype == np.float16 and _cosine(ref, got.astype(np.float32)) > 0.999

    bundle = tmp_path / "io.bundle"
    args = ["build", str(path), "-o", str(bundle), "--target", "cpu", "--precision", "fp16", "--fp16-io",
            "--shapes", "images:1x3x256x256"]  # fmt: skip
    assert main(args) == 0
    m = read_manifest(bundle)
    assert (m.inputs[0].dtype, m.outputs[0].dtype, m.preprocess.dtype) == ("float16", "float16", "float16")
    assert main(["build", str(path), "-o", str(tmp_path / "x.bundle"), "--target", "cpu", "--fp16-io"]) == 2
