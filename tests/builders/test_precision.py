"""Stage 4: FP16 conversion with range checks, INT8/FP8 Q/DQ calibrated on real photos (RetinaFace)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from builders.accuracy import compare_to_reference, gate, iou_matrix
from builders.calibration import Sample, load_calibration
from builders.onnx_load import describe_io, load_onnx
from builders.precision import convert, fp16_block_nodes, quantize, to_fp16
from builders.shapes import fix_shapes, ort_session
from builders.simplify import simplify
from edge.decoders import decode
from edge.errors import BuildError, ConfigError
from edge.preprocess import Meta, load_image, preprocess
from edge.results import Detections
from edge.spec import PostprocessSpec, PreprocessSpec

SIZE = 320
SPEC = PreprocessSpec(input="input", color="bgr", scale=1.0, mean=(104, 117, 127), size=(SIZE, SIZE), pad_value=0)
FACES = PostprocessSpec(task="detect", decoder="retinaface", score_threshold=0.5, iou_threshold=0.4)


@pytest.fixture(scope="module")
def retina(retinaface_onnx: Path) -> onnx.ModelProto:
    model, _ = simplify(fix_shapes(load_onnx(retinaface_onnx), {"input": (1, 3, SIZE, SIZE)}))
    return model


@pytest.fixture(scope="module")
def photos(retina: onnx.ModelProto, photos_dir: Path) -> list[Sample]:
    return load_calibration(photos_dir, SPEC, describe_io(retina)[0][0])


@pytest.fixture(scope="module")
def int8(retina: onnx.ModelProto, photos: list[Sample]) -> onnx.ModelProto:
    return quantize(retina, photos, precision="int8", method="entropy")


def _faces(model: onnx.ModelProto, image: Path) -> tuple[np.ndarray, np.ndarray]:
    session = ort_session(model)
    x, meta = preprocess(load_image(image), SPEC, (1, 3, SIZE, SIZE))
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"input": x})))
    (dets,) = decode(outputs, FACES, [meta])
    assert isinstance(dets, Detections)
    return dets.boxes, dets.scores


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


# -- FP16 ------------------------------------------------------------------------------------------


def test_fp16_keeps_io_float32_and_agrees_with_fp32(retina: onnx.ModelProto, photos: list[Sample]) -> None:
    half = to_fp16(retina, photos)
    assert describe_io(half) == describe_io(retina)  # float32 in, float32 out
    inits = _initializers(half)
    conv_weights = [inits[n.input[1]] for n in half.graph.node if n.op_type == "Conv"]
    assert conv_weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in conv_weights)
    assert any(n.op_type == "Cast" for n in half.graph.node)
    ref, got = ort_session(retina), ort_session(half)
    for sample in photos:
        for a, b in zip(ref.run(None, sample), got.run(None, sample)):
            assert b.dtype == np.float32
            assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()
            assert np.abs(a - b).mean() <= 0.005 * np.abs(a).max()
            a64, b64 = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
            assert a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)) > 0.9995


def _scale_chain() -> onnx.ModelProto:
    """y = x * 1000 * 100 / 100000: the middle product (up to 1e6) and the divisor overflow FP16."""
    consts = [
        onnx.numpy_helper.from_array(np.array(v, np.float32), n)
        for n, v in (("k1000", 1000.0), ("k100", 100.0), ("k1e5", 100000.0))
    ]
    nodes = [
        oh.make_node("Mul", ["x", "k1000"], ["a"], name="times1000"),
        oh.make_node("Mul", ["a", "k100"], ["b"], name="times100"),
        oh.make_node("Div", ["b", "k1e5"], ["y"], name="div1e5"),
    ]
    graph = oh.make_graph(
        nodes,
        "chain",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])],
        consts,
    )
    return onnx.shape_inference.infer_shapes(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]))


def test_fp16_range_check_keeps_overflowing_nodes_in_fp32() -> None:
    model = _scale_chain()
    x = np.linspace(1, 10, 8, dtype=np.float32)[None]
    samples = [{"x": x}]
    assert fp16_block_nodes(model) == ["div1e5"]  # its weight is beyond FP16's 65504
    assert fp16_block_nodes(model, samples) == ["times100", "div1e5"]  # 1e6 leaves FP16's range
    unchecked, checked = to_fp16(model), to_fp16(model, samples)
    fp16 = onnx.TensorProto.FLOAT16
    # Without data only the large weight is kept in FP32: TensorRT would compute times100 in FP16 (inf).
    assert _initializers(unchecked)["k100"].data_type == fp16
    assert _initializers(checked)["k100"].data_type == onnx.TensorProto.FLOAT
    assert _initializers(checked)["k1e5"].data_type == _initializers(unchecked)["k1e5"].data_type == 1
    for converted in (unchecked, checked):
        assert describe_io(converted) == describe_io(model)  # FP32 output although a FP32 node makes it
        y = ort_session(converted).run(None, {"x": x})[0]
        assert y.dtype == np.float32
    np.testing.assert_allclose(ort_session(checked).run(None, {"x": x})[0], x, rtol=2e-3)


# -- INT8 ------------------------------------------------------------------------------------------


def test_int8_qdq_is_laid_out_for_tensorrt(int8: onnx.ModelProto) -> None:
    inits = _initializers(int8)
    qs = [n for n in int8.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in int8.graph.node if n.op_type == "DequantizeLinear"]
    assert qs and len(dqs) > len(qs)  # weights carry a DequantizeLinear only
    for node in qs + dqs:  # symmetric: every zero point is 0
        zp = onnx.numpy_helper.to_array(inits[node.input[2]])
        assert zp.dtype == np.int8 and not zp.any()
    readers = {d.output[0]: [n.op_type for n in int8.graph.node if d.output[0] in n.input] for d in dqs}
    assert all(r in (["Conv"], ["Add"]) for r in readers.values())  # one reader each, no stray Q/DQ
    weight_dqs = [d for d in dqs if d.input[0] in inits]
    for d in weight_dqs:  # per-channel weights along the output-channel axis
        assert onnx.numpy_helper.to_array(inits[d.input[1]]).ndim == 1
        assert any(a.name == "axis" and a.i == 0 for a in d.attribute)
    assert not any(t.data_type == onnx.TensorProto.INT32 for t in int8.graph.initializer)  # biases stay float
    assert describe_io(int8)[0][0].dtype == "float32"


def test_int8_retinaface_passes_the_gate_and_still_finds_the_astronaut(
    retina: onnx.ModelProto, int8: onnx.ModelProto, photos: list[Sample], photos_dir: Path
) -> None:
    result = compare_to_reference(retina, int8, photos, FACES, SPEC)
    gate(result, 0.02)
    assert result["passed"] is True and result["metric"] == "box_recall"
    assert result["boxes"]["reference"] >= 2 and result["boxes"]["recall"] == 1.0
    ref_boxes, _ = _faces(retina, photos_dir / "astronaut.png")
    boxes, scores = _faces(int8, photos_dir / "astronaut.png")
    assert len(ref_boxes) == len(boxes) == 1 and scores[0] > 0.9
    assert iou_matrix(ref_boxes, boxes)[0, 0] > 0.8


def test_int8_plan_parses_in_tensorrt_rtx(int8: onnx.ModelProto, tmp_path: Path) -> None:
    trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is the `rtx` extra")
    path = tmp_path / "int8.onnx"
    onnx.save(int8, str(path))
    logger = trt.Logger(trt.Logger.ERROR)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(path)), [str(parser.get_error(i)) for i in range(parser.num_errors)]


def _input_scale(model: onnx.ModelProto) -> float:
    inits = _initializers(model)
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    return float(onnx.numpy_helper.to_array(inits[q.input[1]]))


def _activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    inits = _initializers(model)
    return {
        n.input[0]: float(onnx.numpy_helper.to_array(inits[n.input[1]]))
        for n in model.graph.node
        if n.op_type == "QuantizeLinear"
    }


def test_calibration_methods_give_different_scales(
    retina: onnx.ModelProto, int8: onnx.ModelProto, photos: list[Sample]
) -> None:
    minmax = quantize(retina, photos, precision="int8", method="minmax")
    peak = max(float(np.abs(s["input"]).max()) for s in photos)
    assert _input_scale(minmax) == pytest.approx(peak / 127, rel=1e-5)
    entropy, largest = _activation_scales(int8), _activation_scales(minmax)
    assert entropy.keys() == largest.keys()
    assert all(entropy[k] <= largest[k] * (1 + 1e-6) for k in entropy)  # never beyond the largest |x|
    assert sum(entropy[k] < 0.9 * largest[k] for k in entropy) >= len(entropy) // 4  # clips many tensors


def test_fp8_qdq_passes_the_gate(retina: onnx.ModelProto, photos: list[Sample]) -> None:
    from ml_dtypes import float8_e4m3fn

    fp8 = convert(retina, "fp8", photos)
    inits = _initializers(fp8)
    q = next(n for n in fp8.graph.node if n.op_type == "QuantizeLinear")
    assert onnx.numpy_helper.to_array(inits[q.input[2]]).dtype == float8_e4m3fn
    peak = max(float(np.abs(s["input"]).max()) for s in photos)
    assert _input_scale(fp8) == pytest.approx(peak / 448, rel=1e-5)  # max |x| maps to E4M3's 448
    result = compare_to_reference(retina, fp8, photos, FACES, SPEC)
    gate(result, 0.05)
    assert result["boxes"]["recall"] == 1.0


def _relu_only() -> onnx.ModelProto:
    graph = oh.make_graph(
        [oh.make_node("Relu", ["x"], ["y"])],
        "relu",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m, s: quantize(m, s, method="kl"), ConfigError, "--calib-method: 'kl' is not one of"),
        (lambda m, s: quantize(m, [], precision="int8"), BuildError, "no calibration samples"),
        (lambda m, s: quantize(m, s, precision="int4"), ConfigError, "precision must be int8 or fp8"),
        (lambda m, s: convert(m, "bf16", s), ConfigError, "--precision: 'bf16' is not one of"),
        (lambda m, s: quantize(_relu_only(), [{"x": np.ones((1, 4), np.float32)}]), BuildError, "no Conv, Gemm"),
    ],
)
def test_precision_errors(
    retina: onnx.ModelProto, photos: list[Sample], call: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        call(retina, photos)  # type: ignore[operator]


def test_fp32_is_unchanged(retina: onnx.ModelProto) -> None:
    assert convert(retina, "fp32") is retina


def test_identity_meta_decodes_in_network_pixels() -> None:
    meta = Meta(SIZE, SIZE, SIZE, SIZE, 1.0, 1.0, 0.0, 0.0)
    box = np.array([[10.0, 20.0, 30.0, 40.0]], np.float32)
    np.testing.assert_array_equal(meta.to_original(box), box)


def test_plugin_model_converts_without_onnx_runtime(tmp_path: Path) -> None:
    from tests.builders.test_onnx_load import _nms_model

    path = tmp_path / "nms.onnx"
    onnx.save(_nms_model("scores"), str(path))
    model = fix_shapes(load_onnx(path), {"boxes": (1, 100, 4), "scores": (1, 100, 80)})  # no ORT check possible
    half = to_fp16(model, [{"boxes": np.ones((1, 100, 4), np.float32), "scores": np.ones((1, 100, 80), np.float32)}])
    assert describe_io(half) == describe_io(model)
    assert [n.op_type for n in half.graph.node if n.op_type != "Cast"] == ["Relu", "EfficientNMS_TRT"]
