"""Make the tiny real Ultralytics exports the decoder and builder tests read, and Ultralytics' own predictions.

Run with the zoo environment (torch + ultralytics; never a dependency of the kit or of the test run):

    YOLO_OFFLINE=1 /work/zoo-venv/bin/python tests/data/models/make_models.py [--only NAME]

Every model is built from Ultralytics' own yaml with a tiny width (random weights, pinned seeds), exported with
Ultralytics' own ONNX exporter, then predicted on ``coffee.jpg`` by Ultralytics' own API
(``YOLO(onnx, task=...).predict``: its letterbox, ONNX Runtime, its NMS, mask and keypoint scaling). The
prediction is written next to the model as ``<name>.json``: the independent reference the decoder tests compare
with. See README.md in this folder.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import onnx
import torch
import ultralytics
import yaml
from torch import nn
from ultralytics import YOLO
from ultralytics.nn.modules.head import Detect

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository: benchmarks.zoo_export
from benchmarks.zoo_export import letterbox_batch, settle_random_weights

HERE = Path(__file__).resolve().parent
IMAGE = HERE / "coffee.jpg"
CFG = Path(ultralytics.__file__).parent / "cfg" / "models"
WIDTH = 0.03125  # channels: 64 -> 8 ... 1024 -> 32
HEAD_MID = 16  # hidden channels of the head branches (Ultralytics' own rule gives 64..80)
IOU = 0.5

# name: yaml under cfg/models, task, imgsz (square), opset, dynamic axes (batch, height, width), nms=True export
MODELS: dict[str, dict[str, Any]] = {
    "yolov8n-detect-dyn": {"yaml": "v8/yolov8.yaml", "task": "detect", "imgsz": 256, "opset": 17, "dynamic": True},
    "yolov8n-detect-static": {"yaml": "v8/yolov8.yaml", "task": "detect", "imgsz": 224, "opset": 12},
    "yolo11n-detect": {"yaml": "11/yolo11.yaml", "task": "detect", "imgsz": 256, "opset": 19},
    "yolov10n-detect": {"yaml": "v10/yolov10n.yaml", "task": "detect", "imgsz": 256, "opset": 13},
    "yolov5nu-detect": {"yaml": "v5/yolov5.yaml", "task": "detect", "imgsz": 256, "opset": 14},
    "yolov8n-detect-nms": {"yaml": "v8/yolov8.yaml", "task": "detect", "imgsz": 256, "opset": 17, "nms": True},
    "yolov8n-seg": {"yaml": "v8/yolov8-seg.yaml", "task": "segment", "imgsz": 256, "opset": 16, "dynamic": True},
    "yolov8n-pose": {"yaml": "v8/yolov8-pose.yaml", "task": "pose", "imgsz": 256, "opset": 18},
    "yolov8n-obb": {"yaml": "v8/yolov8-obb.yaml", "task": "obb", "imgsz": 256, "opset": 20},
    "yolov8n-cls": {"yaml": "v8/yolov8-cls.yaml", "task": "classify", "imgsz": 96, "opset": 12},
}


def tiny_yaml(src: str, dest: Path) -> Path:
    """A copy of Ultralytics' yaml with one tiny scale ``n`` (same layers, same op pattern, few channels)."""
    d = yaml.safe_load((CFG / src).read_text())
    depth = (d.get("scales") or {}).get("n", [0.33])[0]
    d["scales"] = {"n": [depth, WIDTH, 1024]}
    if d.get("nc") == 1000:
        d["nc"] = 10  # the classifier's Linear(1280, nc) would be 5 MB at ImageNet's 1000 classes
    for layer in d["head"]:
        if layer[2] == "Segment":
            layer[3] = [layer[3][0], 32, HEAD_MID]  # nc, nm (kept: the output layout), npr (protos' width)
    # the file name tells Ultralytics the scale (``n``): yolov8.yaml -> yolov8n.yaml
    out = dest / re.sub(r"^(yolo(?:v)?\d+)n?", r"\1n", Path(src).name)
    out.write_text(yaml.safe_dump(d, sort_keys=False))
    return out


def slim(seq: nn.Module, mid: int) -> None:
    """Narrow the hidden channels of one head branch (a chain of Conv/BN/act, possibly nested) to ``mid``.

    The branch keeps its input channels, its output channels and its op pattern; only the widths between
    change. New layers get PyTorch's default initialization.
    """
    leaves = []  # (parent, attribute, layer) in execution order (pre-order walk of a chain)
    for path, m in seq.named_modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
            parent_path, _, attr = path.rpartition(".")
            leaves.append((seq.get_submodule(parent_path), attr, m))
    convs = [m for _, _, m in leaves if isinstance(m, nn.Conv2d)]
    cur = convs[0].in_channels
    for parent, name, m in leaves:
        if isinstance(m, nn.Conv2d):
            last = m is convs[-1]
            out = m.out_channels if last else min(m.out_channels, mid)
            depthwise = m.groups > 1 and m.groups == m.in_channels
            if depthwise:
                out = cur
            new: nn.Module = nn.Conv2d(
                cur,
                out,
                m.kernel_size,
                m.stride,
                m.padding,
                m.dilation,
                groups=cur if depthwise else 1,
                bias=m.bias is not None,
            )
            cur = out
        else:
            new = nn.BatchNorm2d(cur, eps=m.eps, momentum=m.momentum)
        setattr(parent, name, new)


def make_model(name: str, spec: dict[str, Any], work: Path) -> YOLO:
    torch.manual_seed(sum(map(ord, name)))
    model = YOLO(str(tiny_yaml(spec["yaml"], work)), task=spec["task"])
    head = model.model.model[-1]
    if isinstance(head, Detect):
        for attr in ("cv2", "cv3", "cv4", "one2one_cv2", "one2one_cv3", "one2one_cv4"):
            for branch in getattr(head, attr, None) or []:
                slim(branch, HEAD_MID)
    # BatchNorm statistics from the photo, class logits spread like a trained model's (see zoo_export)
    settle_random_weights(model.model, letterbox_batch(spec["imgsz"], (IMAGE,)))
    return model


def pick_conf(model: YOLO, spec: dict[str, Any]) -> float:
    """A threshold in the widest score gap between the 10th and 40th best detections (no near-ties at the edge)."""
    r = model.predict(str(IMAGE), imgsz=spec["imgsz"], conf=0.01, iou=IOU, max_det=300, rect=False, verbose=False)[0]
    boxes = r.obb if spec["task"] == "obb" else r.boxes
    scores = np.sort(boxes.conf.numpy())[::-1]
    if len(scores) < 12:
        return 0.01
    lo, hi = (8, 16) if spec["task"] == "segment" else (10, 40)  # each mask costs ~10 KB in the reference
    top = scores[: min(len(scores), hi + 1)]
    gaps = top[lo - 1 : -1] - top[lo:]
    k = lo - 1 + int(np.argmax(gaps))
    return round(float(top[k] + top[k + 1]) / 2, 6)


def reference(onnx_path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    model = YOLO(str(onnx_path), task=spec["task"])
    ref: dict[str, Any] = {
        "model": onnx_path.name,
        "task": spec["task"],
        "image": IMAGE.name,
        "imgsz": spec["imgsz"],
        "made_by": f"ultralytics {ultralytics.__version__} YOLO(onnx).predict, torch {torch.__version__}",
    }
    proto = onnx.load(str(onnx_path))
    ref["inputs"] = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input
    }
    ref["outputs"] = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output
    }
    ref["opset"] = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if spec["task"] == "classify":
        r = model.predict(str(IMAGE), imgsz=spec["imgsz"], verbose=False)[0]
        probs = r.probs.data.numpy()
        order = np.argsort(-probs, kind="stable")[:5]
        ref["preprocess"] = "Ultralytics classify_transforms: resize shorter side to imgsz, centre crop, RGB/255"
        ref["classes"] = [{"class_id": int(c), "score": float(probs[c])} for c in order]
        return ref
    conf = pick_conf(model, spec)
    ref.update({"conf": conf, "iou": IOU, "max_det": 300, "agnostic_nms": False})
    ref["preprocess"] = "letterbox to imgsz x imgsz, centred, pad 114, RGB, /255 (rect=False)"
    r = model.predict(
        str(IMAGE), imgsz=spec["imgsz"], conf=conf, iou=IOU, max_det=300, rect=False, retina_masks=True, verbose=False
    )[0]
    dets: list[dict[str, Any]] = []
    if spec["task"] == "obb":
        for xywhr, s, c, poly in zip(
            r.obb.xywhr.numpy(), r.obb.conf.numpy(), r.obb.cls.numpy(), r.obb.xyxyxyxy.numpy()
        ):
            dets.append(
                {"xywhr": [float(v) for v in xywhr], "polygon": poly.tolist(), "score": float(s), "class_id": int(c)}
            )
    else:
        for i, (box, s, c) in enumerate(zip(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy())):
            det: dict[str, Any] = {"box": [float(v) for v in box], "score": float(s), "class_id": int(c)}
            if r.keypoints is not None:
                kp = r.keypoints.data[i].numpy()
                det["keypoints"] = kp.tolist()  # [K, 3]: x, y, visibility score
            dets.append(det)
    ref["detections"] = dets
    if r.masks is not None:  # [N, H, W] at the photo's size (retina_masks), bits packed along W
        masks = r.masks.data.numpy() > 0.5
        ref["masks"] = {"file": onnx_path.with_suffix(".masks.npz").name, "shape": list(masks.shape)}
        np.savez_compressed(onnx_path.with_suffix(".masks.npz"), masks=np.packbits(masks, axis=-1))
    return ref


def export(name: str, spec: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = make_model(name, spec, work)
        cwd = os.getcwd()
        os.chdir(work)
        try:
            f = model.export(
                format="onnx",
                imgsz=spec["imgsz"],
                opset=spec["opset"],
                dynamic=spec.get("dynamic", False),
                nms=spec.get("nms", False),
                simplify=True,
                batch=1,
                **({"conf": 0.05} if spec.get("nms") else {}),  # the score threshold inside nms=True graphs
            )
        finally:
            os.chdir(cwd)
        dest = HERE / f"{name}.onnx"
        shutil.copyfile(work / f, dest)
    ref = reference(dest, spec)
    (HERE / f"{name}.json").write_text(json.dumps(ref, indent=1) + "\n")
    n = len(ref.get("detections", ref.get("classes", [])))
    print(
        f"{name}: {dest.stat().st_size / 1024:.0f} KB, inputs {ref['inputs']}, outputs {ref['outputs']}, "
        f"opset {ref['opset']}, {n} reference results",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="make only these (repeatable)")
    args = parser.parse_args()
    names = args.only or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"error: unknown model {unknown[0]!r}; known: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    for name in names:
        export(name, copy.deepcopy(MODELS[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
