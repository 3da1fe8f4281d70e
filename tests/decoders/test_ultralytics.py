"""Every Ultralytics head, decoded by the kit, against Ultralytics' own predictions.

The models are the committed tiny real exports in tests/data/models/ (Ultralytics' own exporter, random
weights); each ``<name>.json`` there holds what ``YOLO(<onnx>).predict`` gave on ``coffee.jpg`` with its
own letterbox, ONNX Runtime, NMS and mask/keypoint scaling (see tests/data/models/README.md). Here the
kit runs the same ONNX file through its own preprocess, ONNX Runtime and decoder. The results must be the
same set: same count, every reference detection matched by class with its box within half a pixel,
score within 1e-3, keypoints within half a pixel, rotated boxes likewise, masks overlapping at IoU >= 0.99.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from edge.decoders import decode
from edge.errors import ConfigError
from edge.preprocess import Meta, preprocess
from edge.results import Classifications, Detections, mask_rle, rotated_corners
from edge.spec import PostprocessSpec, PreprocessSpec

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"

# model, task, decoder
CASES = [
    ("yolov8n-detect-dyn", "detect", "yolov8"),
    ("yolov8n-detect-static", "detect", "yolov8"),
    ("yolo11n-detect", "detect", "yolov8"),
    ("yolov5nu-detect", "detect", "yolov8"),  # v5u: the anchor-free v8 head, not the old yolov5 layout
    ("yolov10n-detect", "detect", "yolov10"),
    ("yolov8n-detect-nms", "detect", "yolov10"),  # nms=True export: the same [B, 300, 6] rows
    ("yolov8n-seg", "segment", None),
    ("yolov8n-pose", "pose", None),
    ("yolov8n-obb", "obb", None),
]


@cache
def _photo() -> np.ndarray:
    image = cv2.imread(str(MODELS / "coffee.jpg"))
    assert image is not None
    return image


@cache
def _session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"])


def _reference(name: str) -> dict[str, Any]:
    ref: dict[str, Any] = json.loads((MODELS / f"{name}.json").read_text())
    return ref


def _run(name: str, images: list[np.ndarray], size: int, **pre: Any) -> tuple[dict[str, np.ndarray], list[Meta]]:
    spec = PreprocessSpec(input="images", size=(size, size), **pre)
    tensors, metas = zip(*(preprocess(im, spec, (1, 3, size, size)) for im in images))
    session = _session(name)
    arrays = session.run(None, {"images": np.concatenate(tensors)})
    return dict(zip([o.name for o in session.get_outputs()], arrays)), list(metas)


def _decode(name: str, task: str, decoder: str | None, **post: Any) -> Detections:
    ref = _reference(name)
    outputs, metas = _run(name, [_photo()], ref["imgsz"])
    spec = PostprocessSpec(
        task=task, decoder=decoder, score_threshold=ref["conf"], iou_threshold=ref["iou"], max_detections=300, **post
    )
    (result,) = decode(outputs, spec, metas)
    assert isinstance(result, Detections)
    return result


def _match(result: Detections, ref: list[dict[str, Any]], task: str) -> list[int]:
    """For each reference detection, the index of ours with its class and the closest box (each used once)."""
    ours = result.rotated if task == "obb" else result.boxes
    assert ours is not None
    free = set(range(len(result)))
    matched = []
    for d in ref:
        want = np.array(d["xywhr"] if task == "obb" else d["box"], np.float32)
        cands = [j for j in free if int(result.class_ids[j]) == d["class_id"]]
        assert cands, f"no detection of class {d['class_id']} left for {d}"
        j = min(cands, key=lambda j: float(np.abs(ours[j] - want).max()))
        assert np.abs(ours[j] - want).max() < 0.5, (ours[j], want)
        assert abs(float(result.scores[j]) - d["score"]) < 1e-3
        free.discard(j)
        matched.append(j)
    return matched


@pytest.mark.parametrize(("name", "task", "decoder"), CASES, ids=[c[0] for c in CASES])
def test_same_detections_as_ultralytics(name: str, task: str, decoder: str | None) -> None:
    ref = _reference(name)
    result = _decode(name, task, decoder)
    assert len(ref["detections"]) >= 10  # the reference is worth comparing with
    assert len(result) == len(ref["detections"])
    matched = _match(result, ref["detections"], task)
    if task == "pose":
        assert result.keypoints is not None and result.keypoint_scores is not None
        for j, d in zip(matched, ref["detections"]):
            kp = np.array(d["keypoints"], np.float32)
            assert np.abs(result.keypoints[j] - kp[:, :2]).max() < 0.5
            assert np.abs(result.keypoint_scores[j] - kp[:, 2]).max() < 1e-3
    if task == "obb":
        for j, d in zip(matched, ref["detections"]):
            assert np.abs(result.polygons()[j] - np.array(d["polygon"])).max() < 0.5
            x1, y1 = np.clip(np.min(d["polygon"], axis=0), 0, None)
            assert result.boxes[j][0] == pytest.approx(x1, abs=0.5) and result.boxes[j][1] == pytest.approx(y1, abs=0.5)
    if task == "segment":
        assert result.masks is not None and result.masks.shape[1:] == _photo().shape[:2]
        packed = np.load(MODELS / ref["masks"]["file"])["masks"]
        want = np.unpackbits(packed, axis=-1)[..., : _photo().shape[1]].astype(bool)
        ious = []
        for j, m in zip(matched, want):
            ious.append((result.masks[j] & m).sum() / max(1, (result.masks[j] | m).sum()))
        # the same two bilinear steps; OpenCV's fixed-point interpolation weights move a few edge pixels
        assert min(ious) >= 0.99, ious


def test_classify_same_ranking_as_ultralytics() -> None:
    ref = _reference("yolov8n-cls")
    # Ultralytics: resize the shorter side to 96, centre crop, RGB / 255 (PIL's antialiased resize)
    outputs, metas = _run("yolov8n-cls", [_photo()], 96, resize="center-crop", crop_fraction=1.0)
    (result,) = decode(outputs, PostprocessSpec(task="classify", top_k=5), metas)
    assert isinstance(result, Classifications)
    want = ref["classes"]
    assert [int(c) for c in result.class_ids[:2]] == [want[0]["class_id"], want[1]["class_id"]]
    got = dict(zip(result.class_ids.tolist(), result.scores.tolist()))
    # the probabilities differ only by the resize (OpenCV's vs PIL's antialiased bilinear)
    assert all(abs(got[w["class_id"]] - w["score"]) < 0.05 for w in want if w["class_id"] in got)


def test_dynamic_model_batch_of_two_decodes_each_image() -> None:
    flipped = np.ascontiguousarray(_photo()[:, ::-1])
    ref = _reference("yolov8n-seg")
    outputs, metas = _run("yolov8n-seg", [_photo(), flipped], ref["imgsz"])
    assert outputs["output0"].shape[0] == 2
    spec = PostprocessSpec(task="segment", score_threshold=ref["conf"], iou_threshold=ref["iou"])
    first, second = decode(outputs, spec, metas)
    single = _decode("yolov8n-seg", "segment", None)
    assert isinstance(first, Detections) and isinstance(second, Detections)
    assert np.allclose(first.boxes, single.boxes, atol=1e-3) and first.masks is not None and single.masks is not None
    assert (first.masks == single.masks).mean() > 0.999
    # the mirror image is another input: other boxes
    assert len(second) != len(first) or not np.allclose(second.boxes, first.boxes, atol=1)


@pytest.mark.parametrize("task", ["detect", "pose", "obb"])
def test_max_detections_keeps_the_best(task: str) -> None:
    name, decoder = {"detect": ("yolov8n-detect-dyn", "yolov8"), "pose": ("yolov8n-pose", None)}.get(
        task, ("yolov8n-obb", None)
    )
    full = _decode(name, task, decoder)
    ref = _reference(name)
    outputs, metas = _run(name, [_photo()], ref["imgsz"])
    spec = PostprocessSpec(
        task=task, decoder=decoder, score_threshold=ref["conf"], iou_threshold=ref["iou"], max_detections=4
    )
    (few,) = decode(outputs, spec, metas)
    assert isinstance(few, Detections) and len(few) == 4
    assert np.allclose(np.sort(few.scores)[::-1], np.sort(full.scores)[::-1][:4])


def test_agnostic_nms_matches_opencv() -> None:
    """Class-agnostic NMS keeps what OpenCV's NMSBoxes keeps from the same candidates (best class per anchor)."""
    ref = _reference("yolo11n-detect")
    outputs, metas = _run("yolo11n-detect", [_photo()], ref["imgsz"])
    base = {"task": "detect", "decoder": "yolov8", "score_threshold": ref["conf"], "iou_threshold": ref["iou"]}
    (aware,) = decode(outputs, PostprocessSpec(**base), metas)
    (agnostic,) = decode(outputs, PostprocessSpec(**base, options={"class_agnostic": True}), metas)
    assert isinstance(aware, Detections) and isinstance(agnostic, Detections)
    assert 0 < len(agnostic) < len(aware)
    head = outputs["output0"][0]
    scores = head[4:].max(axis=0)
    cand = np.flatnonzero(scores > ref["conf"])
    cx, cy, w, h = head[:4, cand]
    xywh = np.stack([cx - w / 2, cy - h / 2, w, h], 1)
    kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores[cand].tolist(), ref["conf"], ref["iou"])
    want = metas[0].to_original(
        np.stack([cx, cy, cx + w, cy + h], 1)[:, [0, 1, 2, 3]] - np.c_[w / 2, h / 2, w / 2, h / 2]
    )
    assert len(agnostic) == len(kept)
    assert np.allclose(np.sort(agnostic.boxes, axis=0), np.sort(want[np.asarray(kept).ravel()], axis=0), atol=0.01)


def test_obb_agnostic_and_segment_json() -> None:
    seg = _decode("yolov8n-seg", "segment", None)
    item = seg[:2].to_json()[0]
    rle = item["mask"]
    assert rle["size"] == list(_photo().shape[:2]) and sum(rle["counts"]) == _photo().shape[0] * _photo().shape[1]
    # decode the run lengths by hand (column-major, zeros first) and compare with the mask
    flat = np.repeat(np.arange(len(rle["counts"])) % 2 == 1, rle["counts"])
    assert seg.masks is not None and np.array_equal(flat.reshape(_photo().shape[1], -1).T, seg.masks[0])
    assert mask_rle(np.ones((2, 3), bool))["counts"] == [0, 6]
    obb = _decode("yolov8n-obb", "obb", None)
    row = obb.to_json()[0]
    assert len(row["rotated_box"]) == 5 and len(row["polygon"]) == 4
    # a square turned by 90 degrees has the same corners (in another order)
    square = rotated_corners(np.array([[10, 10, 4, 4, np.pi / 2]], np.float32))[0]
    assert sorted(map(tuple, np.round(square).tolist())) == [(8, 8), (8, 12), (12, 8), (12, 12)]


def test_wrong_outputs_are_one_clear_error() -> None:
    ref = _reference("yolov8n-detect-dyn")
    outputs, metas = _run("yolov8n-detect-dyn", [_photo()], ref["imgsz"])
    with pytest.raises(ConfigError, match=r"yolov8 \(segment\) expects mask prototypes"):
        decode(outputs, PostprocessSpec(task="segment"), metas)
    with pytest.raises(ConfigError, match="not a whole number of 3-value keypoints"):
        decode(outputs, PostprocessSpec(task="pose", labels=("a", "b", "c")), metas)  # 84 - 4 - 3 = 77
    with pytest.raises(ConfigError, match=r"yolov10 \(obb\) expects rows \[B, M, 7\]"):
        decode(outputs, PostprocessSpec(task="obb", decoder="yolov10"), metas)
    with pytest.raises(ConfigError, match="task segment takes decoder yolov8 or yolov10"):
        PostprocessSpec(task="segment", decoder="retinaface")
    with pytest.raises(ConfigError, match="unknown option for decoder yolov8 \\(pose\\)"):
        decode(outputs, PostprocessSpec(task="pose", options={"kpts": 5}), metas)


def test_wrong_decoder_for_the_layout_says_which_fits() -> None:
    """nms=True rows [1, 300, 6] are not a 2-class dense head; labels that do not fit say so."""
    ref = _reference("yolov8n-detect-nms")
    outputs, metas = _run("yolov8n-detect-nms", [_photo()], ref["imgsz"])
    with pytest.raises(ConfigError, match=r"end-to-end rows .*--decoder yolov10"):
        decode(outputs, PostprocessSpec(task="detect", decoder="yolov8"), metas)
    dense, metas = _run("yolo11n-detect", [_photo()], 256)
    with pytest.raises(ConfigError, match=r"with nc = 10 \(the labels\): 14 channels; got output0 \[1, 84, 1344\]"):
        decode(dense, PostprocessSpec(task="detect", decoder="yolov8", labels=tuple("abcdefghij")), metas)
