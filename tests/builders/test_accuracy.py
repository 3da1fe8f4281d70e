"""Stage 5: the comparison with the FP32 reference (cosine, boxes, top-1) and the --max-drop gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from builders.accuracy import bootstrap_interval, compare_to_reference, gate, match_boxes, wilson_interval
from builders.calibration import Sample, load_calibration
from builders.onnx_load import describe_io, load_onnx
from builders.precision import quantize, to_fp16
from builders.shapes import fix_shapes
from builders.simplify import simplify
from edge.errors import BuildError
from edge.results import Detections
from edge.spec import PostprocessSpec, PreprocessSpec

SPEC = PreprocessSpec(input="input", color="bgr", scale=1.0, mean=(104, 117, 127), size=(320, 320), pad_value=0)
FACES = PostprocessSpec(task="detect", decoder="retinaface", score_threshold=0.5, iou_threshold=0.4)


@pytest.fixture(scope="module")
def retina(retinaface_onnx: Path) -> onnx.ModelProto:
    model, _ = simplify(fix_shapes(load_onnx(retinaface_onnx), {"input": (1, 3, 320, 320)}))
    return model


@pytest.fixture(scope="module")
def photos(retina: onnx.ModelProto, photos_dir: Path) -> list[Sample]:
    return load_calibration(photos_dir, SPEC, describe_io(retina)[0][0], limit=4)


@pytest.fixture(scope="module")
def int8(retina: onnx.ModelProto, photos: list[Sample]) -> onnx.ModelProto:
    return quantize(retina, photos, precision="int8", method="minmax")


def test_identical_models_have_no_drop(retina: onnx.ModelProto, photos: list[Sample]) -> None:
    result = compare_to_reference(retina, retina, photos, FACES, SPEC)
    assert result["drop"] == 0.0 and result["metric"] == "box_recall"
    assert result["boxes"] == {"iou": 0.5, "reference": 2, "matched": 2, "extra": 0, "unstable": 0, "recall": 1.0}
    # The candidate runs unoptimised (unfused): only float rounding differs.
    assert all(
        o["cosine_min"] == pytest.approx(1.0) and o["peak_relative_error"] < 1e-4 for o in result["outputs"].values()
    )
    gate(result, 0.0)
    assert json.loads(json.dumps(result))["passed"] is True  # JSON-able, for the manifest


def _edge_detector(threshold: float) -> onnx.ModelProto:
    """A yolov8-layout head [1, 5, 2] (cx, cy, w, h, score) over two fixed, far-apart boxes whose scores are
    sigmoid(1e6 * (x_i - threshold)): box i is found exactly when the input's x_i exceeds ``threshold``."""
    geometry = np.array([[[20, 60]], [[20, 60]], [[10, 10]], [[10, 10]]], np.float32)  # [4, 1, 2]
    nodes = [
        oh.make_node("Sub", ["x", "t"], ["d"]),
        oh.make_node("Mul", ["d", "k"], ["z"]),
        oh.make_node("Sigmoid", ["z"], ["s"]),  # [1, 2]
        oh.make_node("Reshape", ["s", "shape"], ["s3"]),  # [1, 1, 2]
        oh.make_node("Concat", ["geometry", "s3"], ["output0"], axis=1),  # [1, 5, 2]
    ]
    inits = [
        onnx.numpy_helper.from_array(np.array(threshold, np.float32), "t"),
        onnx.numpy_helper.from_array(np.array(1e6, np.float32), "k"),
        onnx.numpy_helper.from_array(np.array([1, 1, 2], np.int64), "shape"),
        onnx.numpy_helper.from_array(geometry.reshape(1, 4, 2), "geometry"),
    ]
    graph = oh.make_graph(
        nodes,
        "edge",
        [  # "images" only sizes the image (100x100 network pixels) the boxes are clipped to
            oh.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 100, 100]),
            oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2]),
        ],
        [oh.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, [1, 5, 2])],
        inits,
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8)


def test_boxes_the_reference_loses_under_fp16_input_rounding_are_not_graded() -> None:
    # Input (0.5, 0.1): 0.1 rounds to 0.0999755859375 in FP16 (hand-checked: 0x2E66). With threshold 0.09999,
    # box 1 is found at 0.1 (score sigmoid(10)) and lost at the rounded input (sigmoid(-14)): a knife edge.
    # The candidate (threshold 0.1000001) loses box 1 and keeps box 0: graded on box 0 only, recall 1.0.
    sample: Sample = {"images": np.zeros((1, 3, 100, 100), np.float32), "x": np.array([[0.5, 0.1]], np.float32)}
    spec = PostprocessSpec(task="detect", decoder="yolov8", labels=("thing",), score_threshold=0.5)
    result = compare_to_reference(_edge_detector(0.09999), _edge_detector(0.1000001), [sample], spec)
    assert result["boxes"] == {"iou": 0.5, "reference": 1, "matched": 1, "extra": 0, "unstable": 1, "recall": 1.0}
    assert any("1 reference box(es) not graded" in note for note in result["notes"])
    # A candidate that loses the stable box is still a miss.
    result = compare_to_reference(_edge_detector(0.09999), _edge_detector(0.6), [sample], spec)
    assert (result["boxes"]["reference"], result["boxes"]["matched"], result["metric"]) == (1, 0, "box_recall")
    with pytest.raises(BuildError, match=r"0/1 reference boxes found \(1 more not graded: the FP32 model loses"):
        gate(result, 0.02, "fp16")


def test_tight_max_drop_fails_with_the_numbers(
    retina: onnx.ModelProto, int8: onnx.ModelProto, photos: list[Sample]
) -> None:
    result = compare_to_reference(retina, int8, photos)  # no postprocess: gated on the worst output cosine
    assert result["metric"] == "cosine" and 0.5 < result["score"] < 0.99
    worst = min(result["outputs"], key=lambda n: result["outputs"][n]["cosine"])
    with pytest.raises(BuildError) as info:
        gate(result, 0.001)
    message = str(info.value)
    assert message.startswith(f"accuracy gate: drop {result['drop']:.2%} exceeds --max-drop 0.10%")
    assert f"cosine {result['score']:.4f} vs the FP32 reference on 4 samples" in message
    assert f"lowest output cosine {result['score']:.4f}: {worst})" in message and "--precision fp16" in message
    assert result["passed"] is False
    loose = dict(result)
    gate(loose, 0.5)
    assert loose["passed"] is True and loose["max_drop"] == 0.5


def test_detector_gate_counts_boxes_not_raw_cosine(
    retina: onnx.ModelProto, int8: onnx.ModelProto, photos: list[Sample]
) -> None:
    result = compare_to_reference(retina, int8, photos, FACES, SPEC)
    assert result["metric"] == "box_recall" and result["boxes"]["recall"] == 1.0
    assert result["outputs"]["loc"]["cosine"] < 0.99  # the raw box deltas move, the boxes do not
    gate(result, 0.01)


def test_detector_without_reference_boxes_falls_back_to_cosine(
    retina: onnx.ModelProto, int8: onnx.ModelProto, photos: list[Sample]
) -> None:
    never = PostprocessSpec(task="detect", decoder="retinaface", score_threshold=1.0)
    result = compare_to_reference(retina, int8, photos, never, SPEC)
    assert result["boxes"]["reference"] == 0 and result["boxes"]["recall"] is None
    assert result["metric"] == "cosine"
    assert any("finds no box" in note for note in result["notes"])
    gate(result, None)  # reported, not gated
    # gated, the cosine would say nothing about boxes: refused, whatever the cosine
    with pytest.raises(BuildError, match=r"^accuracy gate: the FP32 model finds no box in the 4 validation image"):
        gate(result, 1.0)


@pytest.mark.parametrize(
    ("precision", "hint"),
    [
        ("int8", "try another --calib-method"),
        ("fp8", "try another --calib-method"),
        ("fp16", "the FP16 range check keeps overflowing nodes in FP32"),
        ("int8-dynamic", "dynamic quantization costs this model too much"),
    ],
)
def test_gate_hint_fits_the_precision(precision: str, hint: str) -> None:
    result = {"metric": "cosine", "score": 0.9, "drop": 0.1, "samples": 3, "outputs": {"y": {"cosine": 0.9}}}
    with pytest.raises(BuildError) as info:
        gate(result, 0.01, precision)
    assert hint in str(info.value)
    assert (precision in ("int8", "fp8")) == ("--calib-method" in str(info.value))


def _dets(boxes: list[list[float]], classes: list[int], scores: list[float] | None = None) -> Detections:
    n = len(boxes)
    return Detections(
        np.asarray(boxes, np.float32).reshape(n, 4),
        np.asarray(scores or [0.9] * n, np.float32),
        np.asarray(classes, np.int64),
    )


@pytest.mark.parametrize(
    ("ref", "cand", "matched"),
    [
        (_dets([[0, 0, 10, 10]], [0]), _dets([[1, 1, 11, 11]], [0]), 1),  # IoU 0.68
        (_dets([[0, 0, 10, 10]], [0]), _dets([[4, 4, 14, 14]], [0]), 0),  # IoU 0.22
        (_dets([[0, 0, 10, 10]], [0]), _dets([[0, 0, 10, 10]], [1]), 0),  # other class
        (_dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0]), _dets([[0, 0, 10, 10]], [0]), 1),  # one to one
        (_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 2]), _dets([[20, 20, 30, 31], [0, 0, 10, 10]], [2, 0]), 2),
        (_dets([], []), _dets([[0, 0, 10, 10]], [0]), 0),
    ],
)
def test_match_boxes(ref: Detections, cand: Detections, matched: int) -> None:
    assert match_boxes(ref, cand) == matched


def _classifier(weights: np.ndarray) -> onnx.ModelProto:
    graph = oh.make_graph(
        [oh.make_node("Gemm", ["x", "w"], ["logits"]), oh.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "classifier",
        [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16])],
        [oh.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, [1, 10])],
        [onnx.numpy_helper.from_array(weights.astype(np.float32), "w")],
    )
    return onnx.shape_inference.infer_shapes(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)]))


def test_classifier_top1_agreement() -> None:
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((16, 10))
    samples = [{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(20)]
    reference = _classifier(weights)
    spec = PostprocessSpec(task="classify")
    same = compare_to_reference(reference, to_fp16(reference), samples, spec)
    assert same["metric"] == "top1_agreement" and same["top1_agreement"] == 1.0
    swapped = _classifier(weights[:, [1, 0, 2, 3, 4, 5, 6, 7, 8, 9]])  # classes 0 and 1 trade places
    worse = compare_to_reference(reference, swapped, samples, spec)
    assert 0.0 < worse["top1_agreement"] < 1.0
    assert worse["drop"] == pytest.approx(1.0 - worse["top1_agreement"])
    with pytest.raises(BuildError, match=r"top1_agreement 0\.\d{4} vs the FP32 reference on 20 samples"):
        gate(worse, 0.0)


def test_non_finite_outputs_count_as_total_disagreement() -> None:
    def model(node: onnx.NodeProto) -> onnx.ModelProto:
        graph = oh.make_graph(
            [node],
            "g",
            [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
            [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
            [onnx.numpy_helper.from_array(np.zeros(1, np.float32), "zero")],
        )
        return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])

    reference = model(oh.make_node("Sub", ["x", "zero"], ["y"]))
    broken = model(oh.make_node("Div", ["x", "zero"], ["y"]))  # x / 0: inf, as an FP16 overflow would give
    result = compare_to_reference(reference, broken, [{"x": np.ones((1, 4), np.float32)}])
    assert result["outputs"]["y"]["non_finite"] == 4
    assert result["score"] == 0.0 and result["drop"] == 1.0


def test_no_samples_is_an_error(retina: onnx.ModelProto) -> None:
    with pytest.raises(BuildError, match="no samples"):
        compare_to_reference(retina, retina, [])


@pytest.mark.parametrize(("k", "n"), [(3, 3), (0, 10), (8, 10), (97, 100), (1, 1)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    from scipy.stats import binomtest

    reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((reference.low, reference.high), abs=1e-6)


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_samples() -> None:
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.99, 0.01, 5), rng.normal(0.99, 0.01, 500)
    lo_few, hi_few = bootstrap_interval(few)
    lo_many, hi_many = bootstrap_interval(many)
    assert lo_few <= few.mean() <= hi_few and lo_many <= many.mean() <= hi_many
    assert hi_many - lo_many < (hi_few - lo_few) / 3  # ~1/sqrt(n)
    # the normal-theory interval of a mean of 500 draws: the bootstrap agrees within 20 %
    half = 1.96 * many.std(ddof=1) / np.sqrt(many.size)
    assert (hi_many - lo_many) / 2 == pytest.approx(half, rel=0.2)
    assert bootstrap_interval(few) == (lo_few, hi_few)  # seeded
    assert bootstrap_interval([0.5]) == (0.5, 0.5)


def _constant_detector(boxes: np.ndarray) -> onnx.ModelProto:
    """A 'detector' whose output0 [1, 84, N] is ``boxes`` whatever the 640x640 image (yolov8 layout)."""
    import onnx.helper as oh

    nodes = [
        oh.make_node("ReduceMax", ["images"], ["peak"], keepdims=0),
        oh.make_node("Mul", ["peak", "zero"], ["nothing"]),
        oh.make_node("Add", ["table", "nothing"], ["output0"]),
    ]
    graph = oh.make_graph(
        nodes,
        "constant_detector",
        [oh.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 3, 640, 640])],
        [oh.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, list(boxes.shape))],
        [
            onnx.numpy_helper.from_array(boxes.astype(np.float32), "table"),
            onnx.numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        ],
    )
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])


def test_nms_keeping_the_other_of_two_overlapping_boxes_is_not_a_miss() -> None:
    # Two 50x50 boxes 18 px apart (IoU 0.47: NMS at 0.45 keeps one, matching at 0.5 would not pair them).
    # The candidate's scores move by 1 %, so NMS keeps the other box: the same detection, not a loss.
    table = np.zeros((1, 84, 100), np.float32)  # 98 empty anchors: the layout needs N > 84
    table[0, :4, 0] = (100, 100, 50, 50)
    table[0, :4, 1] = (118, 100, 50, 50)
    table[0, 4, :2] = (0.800, 0.795)
    moved = table.copy()
    moved[0, 4, :2] = (0.792, 0.803)
    spec = PostprocessSpec(task="detect", decoder="yolov8", score_threshold=0.5, iou_threshold=0.45)
    samples = [{"images": np.zeros((1, 3, 640, 640), np.float32)}]
    result = compare_to_reference(_constant_detector(table), _constant_detector(moved), samples, spec)
    assert result["boxes"]["reference"] == 1 and result["boxes"]["recall"] == 1.0
    assert result["boxes"]["extra"] == 0
    # a box that really moves (IoU < 0.5 with anything the reference has) is a miss
    shifted = moved.copy()
    shifted[0, 0, :2] += 60
    result = compare_to_reference(_constant_detector(table), _constant_detector(shifted), samples, spec)
    assert result["boxes"]["recall"] == 0.0 and result["boxes"]["extra"] == 1
