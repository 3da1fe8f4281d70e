"""Preprocessing and decoder flags of ``edge build`` on tiny real Ultralytics exports (tests/data/models), checked
against Ultralytics' own predictions recorded beside each model (made with its predictor, not with this kit).

- a dynamic profile without ``--size`` (docs/build.md's first example) takes any image: letterboxed into the
  profile's opt shape, boxes back in source pixels, equal to Ultralytics' boxes;
- ``--preset`` fills the pixel convention, flags given beside it win;
- ``--resize center-crop --crop-fraction 1.0`` is Ultralytics' classify transform (torchvision Resize + CenterCrop);
- ``--max-detections``, ``--agnostic-nms``, ``--top-k`` reach the manifest and the decoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import main, make_parser
from edge.cli.build import preprocess_fields
from edge.manifest import read_manifest
from edge.runtime import load
from tests.runtime.conftest import CPU

MODELS = Path(__file__).resolve().parents[1] / "data" / "models"
COFFEE = MODELS / "coffee.jpg"  # 600x400, the image the references were made on


def reference(model: str) -> dict:
    return json.loads((MODELS / f"{model}.json").read_text())


def build(tmp: Path, model: str, *flags: str, name: str = "out.bundle") -> Path:
    out = tmp / name
    assert (
        main(["build", str(MODELS / f"{model}.onnx"), "-o", str(out), "--target", "cpu", "--no-simplify", *flags]) == 0
    )
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


DETECT = ["--preset", "yolo", "--task", "detect", "--decoder", "yolov8", "--iou-threshold", "0.5"]
# docs/build.md's first example: a dynamic batch profile and no --size
PROFILE = ["--min-shapes", "images:1x3x256x256", "--max-shapes", "images:4x3x256x256"]


@pytest.fixture(scope="module")
def dyn_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ref = reference("yolov8n-detect-dyn")
    folder = tmp_path_factory.mktemp("dyn")
    return build(folder, "yolov8n-detect-dyn", *PROFILE, *DETECT, "--score-threshold", str(ref["conf"]))


def test_dynamic_profile_bundle_takes_any_image_and_matches_ultralytics(
    dyn_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = read_manifest(dyn_bundle)
    assert m.inputs[0].shape == (-1, 3, -1, -1) and m.preprocess.size is None
    pre = m.preprocess
    assert (pre.color, pre.scale, pre.mean, pre.std, pre.resize, pre.pad_value, pre.pad_align) == (
        "rgb",
        1 / 255,
        (0.0, 0.0, 0.0),
        (1.0, 1.0, 1.0),
        "letterbox",
        114,
        "center",
    )
    want = reference("yolov8n-detect-dyn")["detections"]
    with load(dyn_bundle, facts=CPU, warmup=0) as model:
        feeds, metas = model.prepare([cv2.imread(str(COFFEE))])
        assert feeds["images"].shape == (1, 3, 256, 256)  # the profile's opt height/width, not 400x600
        # 600x400 letterboxed into 256x256 by hand: r = 256/600, 256x171 (round(170.67)), top round(42.5 - 0.1) = 42
        assert (metas[0].scale_x, metas[0].pad_x, metas[0].pad_y) == (256 / 600, 0.0, 42.0)
        got = model.predict(COFFEE).to_json()
        small = model.predict(cv2.resize(cv2.imread(str(COFFEE)), (300, 200)))  # any other size runs too
    assert len(got) == len(want) > 0
    for d in got:  # every box is Ultralytics' box, class and score, in source (600x400) pixels
        same = [w for w in want if w["class_id"] == d["class_id"]]
        match = min(same, key=lambda w: float(np.abs(np.subtract(w["box"], d["box"])).max()))
        np.testing.assert_allclose(d["box"], match["box"], atol=0.05)
        assert d["score"] == pytest.approx(match["score"], abs=1e-3)
    assert len(small) > 0 and small.boxes[:, 2].max() <= 300 and small.boxes[:, 3].max() <= 200
    vga = tmp_path / "street.jpg"
    cv2.imwrite(str(vga), cv2.resize(cv2.imread(str(COFFEE)), (640, 480)))
    assert main(["infer", str(dyn_bundle), str(vga)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{vga}: ") and "detection(s)" in out
    assert main(["doctor", str(dyn_bundle)]) == 0


def test_max_detections_and_agnostic_nms(dyn_bundle: Path, tmp_path: Path) -> None:
    ref = reference("yolov8n-detect-dyn")
    flags = [*PROFILE, *DETECT, "--score-threshold", str(ref["conf"]), "--max-detections", "5"]
    top5 = build(tmp_path, "yolov8n-detect-dyn", *flags, name="top5.bundle")
    agnostic = build(tmp_path, "yolov8n-detect-dyn", *flags, "--agnostic-nms", name="agnostic.bundle")
    post = read_manifest(agnostic).postprocess
    assert (post.max_detections, dict(post.options)) == (5, {"class_agnostic": True})
    assert read_manifest(top5).postprocess.options == {}
    with load(top5, facts=CPU, warmup=0) as model:
        got = model.predict(COFFEE)
    with load(dyn_bundle, facts=CPU, warmup=0) as model:
        every = model.predict(COFFEE)
    with load(agnostic, facts=CPU, warmup=0) as model:
        one_per_object = model.predict(COFFEE)
    assert len(got) == len(one_per_object) == 5
    # greedy NMS keeps boxes best first: the 5 kept are Ultralytics' 5 best
    best = sorted(ref["detections"], key=lambda d: -d["score"])[:5]
    np.testing.assert_allclose(got.boxes, [d["box"] for d in best], atol=0.05)
    # class-aware NMS lets boxes of different classes overlap (in network pixels, before clipping to the image)
    with load(agnostic, facts=CPU, warmup=0) as model:
        feeds, (meta,) = model.prepare([cv2.imread(str(COFFEE))])
        raw = model.infer_raw(feeds)["output0"][0].T  # [anchors, 4 + classes], Ultralytics' layout
    np.testing.assert_allclose(one_per_object.boxes, agnostic_nms(raw, ref["conf"], 0.5, 5, meta), atol=0.05)
    assert not np.allclose(every.boxes[:5], one_per_object.boxes)


def agnostic_nms(rows: np.ndarray, conf: float, iou_limit: float, keep: int, meta: object) -> np.ndarray:
    """A plain greedy NMS over every class at once (Ultralytics' agnostic=True): score = best class, boxes cx,cy,w,h
    in network pixels, best first, drop any box overlapping a kept one by more than ``iou_limit``; then into source
    pixels ((x - pad) / scale, clipped to the image)."""
    scores = rows[:, 4:].max(axis=1)
    cand = rows[scores > conf]
    order = np.argsort(-scores[scores > conf], kind="stable")
    xyxy = np.stack(
        [
            cand[:, 0] - cand[:, 2] / 2,
            cand[:, 1] - cand[:, 3] / 2,
            cand[:, 0] + cand[:, 2] / 2,
            cand[:, 1] + cand[:, 3] / 2,
        ],
        1,
    )
    kept: list[np.ndarray] = []
    for i in order:
        if all(iou(xyxy[i], k) <= iou_limit for k in kept):
            kept.append(xyxy[i])
        if len(kept) == keep:
            break
    out = np.array(kept)
    out[:, 0::2] = np.clip((out[:, 0::2] - meta.pad_x) / meta.scale_x, 0, meta.orig_w)  # type: ignore[attr-defined]
    out[:, 1::2] = np.clip((out[:, 1::2] - meta.pad_y) / meta.scale_y, 0, meta.orig_h)  # type: ignore[attr-defined]
    return out


def test_classifier_center_crop_matches_ultralytics(tmp_path: Path) -> None:
    """Ultralytics' classify transform is the torchvision preset without ImageNet normalisation, cropping the full
    shorter side: --preset torchvision --mean 0 --std 1 --crop-fraction 1.0 (flags beside the preset win)."""
    from PIL import Image

    flags = ["--preset", "torchvision", "--mean", "0", "--std", "1", "--crop-fraction", "1.0"]
    bundle = build(tmp_path, "yolov8n-cls", *flags, "--task", "classify", "--top-k", "5")
    m = read_manifest(bundle)
    pre = m.preprocess
    assert (pre.color, pre.scale, pre.mean, pre.std, pre.resize, pre.crop_fraction) == (
        "rgb",
        1 / 255,
        (0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0)[:0] or (1.0, 1.0, 1.0),
        "center-crop",
        1.0,
    )
    assert m.postprocess.top_k == 5
    want = {c["class_id"]: c["score"] for c in reference("yolov8n-cls")["classes"]}
    bgr = cv2.imread(str(COFFEE))
    with load(bundle, facts=CPU, warmup=0) as model:
        results = [model.predict(x) for x in (bgr, Image.open(COFFEE), COFFEE, str(COFFEE))]
        swapped = model.predict(np.ascontiguousarray(bgr[:, :, ::-1]))  # an RGB array taken as BGR: wrong colours
    first = results[0].to_json()
    assert all(r.to_json() == first for r in results[1:])  # OpenCV array, PIL image and paths agree
    assert first[0]["class_id"] == max(want, key=want.__getitem__)
    scores = {c["class_id"]: c["score"] for c in first}
    for class_id in set(want) & set(scores):
        assert scores[class_id] == pytest.approx(want[class_id], abs=3e-3)
    assert swapped.to_json() != first


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["--preset", "torchvision"], {"color": "rgb", "mean": (0.485, 0.456, 0.406), "resize": "center-crop"}),
        (["--preset", "tf"], {"scale": 1 / 127.5, "mean": (1.0, 1.0, 1.0), "std": (1.0, 1.0, 1.0)}),
        (["--preset", "caffe", "--resize", "letterbox"], {"color": "bgr", "scale": 1.0, "resize": "letterbox"}),
        (["--color", "bgr", "--preset", "yolo"], {"color": "bgr", "pad_value": 114, "resize": "letterbox"}),
        (["--preset", "yolo", "--pad-value", "0", "--pad-align", "topleft"], {"pad_value": 0, "pad_align": "topleft"}),
        (["--mean", "1,2,3"], {"mean": (1.0, 2.0, 3.0), "color": None, "resize": None}),
    ],
)
def test_preset_fills_and_explicit_flags_win(argv: list[str], want: dict[str, object]) -> None:
    args = make_parser().parse_args(["build", "m.onnx", "-o", "o.bundle", *argv])
    fields = preprocess_fields(args)
    assert {k: fields[k] for k in want} == want


def test_caffe_preset_in_the_manifest(tmp_path: Path) -> None:
    m = read_manifest(build(tmp_path, "yolov8n-cls", "--preset", "caffe", "--task", "classify"))
    assert (m.preprocess.color, m.preprocess.scale, m.preprocess.mean, m.preprocess.resize) == (
        "bgr",
        1.0,
        (103.939, 116.779, 123.68),
        "stretch",
    )


@pytest.mark.parametrize(
    ("model", "flags", "fragment"),
    [
        ("yolov10n-detect", ["--task", "detect", "--decoder", "yolov10", "--agnostic-nms"], "--agnostic-nms: decoder"),
        ("yolov8n-cls", ["--task", "classify", "--agnostic-nms"], "--agnostic-nms: it needs --task detect"),
        ("yolov8n-cls", ["--resize", "center-crop", "--crop-fraction", "1.5"], "--crop-fraction: expected a fraction"),
        ("yolov8n-cls", ["--crop-fraction", "0.9"], "--crop-fraction is used by --resize center-crop"),
        ("yolov8n-cls", ["--task", "classify", "--max-detections", "3"], "--max-detections is a detector setting"),
        ("yolov8n-cls", ["--top-k", "3"], "--top-k is the number of classes a classifier reports"),
        ("yolov8n-cls", ["--task", "classify", "--top-k", "0"], "--top-k"),
        ("yolov8n-cls", ["--pad-value", "300"], "--pad-value: expected a pixel value 0..255"),
    ],
)
def test_bad_flags_one_line_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, flags: list[str], fragment: str
) -> None:
    out = tmp_path / "x.bundle"
    code = main(["build", str(MODELS / f"{model}.onnx"), "-o", str(out), "--target", "cpu", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unknown_preset_is_one_line_with_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["build", "m.onnx", "-o", "o.bundle", "--preset", "torchvison"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "did you mean torchvision?" in err[0]


def test_edge_run_on_a_640x480_clip_with_a_dynamic_profile_bundle(dyn_bundle: Path, tmp_path: Path) -> None:
    """The issue's `edge run` case: a 640x480 video through a bundle whose profile is 256x256 (no --size)."""
    frame = cv2.resize(cv2.imread(str(COFFEE)), (640, 480))
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 480))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    events = tmp_path / "events.jsonl"
    args = ["run", "--model", str(dyn_bundle), "--source", str(clip), "--sink", f"jsonl://{events}"]
    assert main([*args, "--max-frames", "3"]) == 0
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 3 and all(line["detections"] for line in lines)
    boxes = np.array([d["box"] for d in lines[0]["detections"]])
    assert boxes[:, [0, 2]].max() <= 640 and boxes[:, [1, 3]].max() <= 480
