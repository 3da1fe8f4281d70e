"""Pre- and post-processing specs: the single source of truth shared by builder and runtime.

The builder records a :class:`PreprocessSpec` and a :class:`PostprocessSpec` in the bundle's
manifest; calibration, the accuracy gate and the runtime all feed images through
:func:`edge.preprocess.preprocess` with that same spec, so INT8 scales are computed on exactly
the tensors the device will see.

Pixel transform: ``x' = (x * scale - mean) / std`` per channel, after colour conversion and resize.
:data:`PRESETS` holds the pixel conventions of the common model zoos (``--preset``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.configkit import Reader
from edge.errors import ConfigError

RESIZE_MODES = ("letterbox", "stretch", "center-crop", "none")
PAD_ALIGNS = ("center", "topleft")
COLORS = ("bgr", "rgb")
LAYOUTS = ("nchw", "nhwc")
TASKS = ("detect", "segment", "pose", "obb", "classify", "raw")
DECODERS = ("yolov5", "yolov8", "yolov10", "rtdetr", "efficientnms", "retinaface", "ssd")
# tasks whose results are boxes (edge.results.Detections); segment, pose and obb take the YOLO head layouts:
# ``yolov8`` (dense [B, 4+nc+extra, N], v5u/v8/v9/11/12, the default) or ``yolov10`` (end-to-end rows [B, K, 6+extra])
BOX_TASKS = ("detect", "segment", "pose", "obb")
YOLO_TASK_DECODERS = ("yolov8", "yolov10")
# decoders with no class-aware NMS of their own (NMS-free heads, NMS inside the graph, one class):
# ``--agnostic-nms`` (``options.class_agnostic``) means nothing to them and is refused at build time
DECODERS_WITHOUT_CLASS_NMS = ("yolov10", "rtdetr", "efficientnms", "retinaface")


# The pixel conventions of the common model zoos: colour order, scale, mean, std and resize, as each zoo
# defines its evaluation transform (``--preset NAME``; flags given beside it win).
def _convention(
    color: str, scale: float, mean: tuple[float, ...], std: tuple[float, ...], resize: str, **extra: Any
) -> dict[str, Any]:
    return {"color": color, "scale": scale, "mean": mean, "std": std, "resize": resize, **extra}


ONES = (1.0, 1.0, 1.0)
PRESETS: dict[str, dict[str, Any]] = {
    # torchvision / timm ImageNet models: Resize(size / 0.875) + CenterCrop(size), ToTensor, Normalize
    "torchvision": _convention("rgb", 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "center-crop"),
    # TensorFlow / Keras "tf" mode (MobileNet, Inception, EfficientNet-lite): x / 127.5 - 1
    "tf": _convention("rgb", 1 / 127.5, ONES, ONES, "center-crop"),
    # Ultralytics YOLO: RGB, x / 255, letterbox with grey (114) padding, centred
    "yolo": _convention("rgb", 1 / 255, (0.0, 0.0, 0.0), ONES, "letterbox", pad_value=114, pad_align="center"),
    # Caffe / Keras "caffe" mode (VGG, ResNet-50 of Keras): BGR, 0..255 minus the ImageNet BGR means
    "caffe": _convention("bgr", 1.0, (103.939, 116.779, 123.68), ONES, "stretch"),
}


def preset(name: str) -> dict[str, Any]:
    """The preprocess fields of a preset (a copy), or a ConfigError listing the presets."""
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r} is not one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def _triple(r: Reader, key: str, default: tuple[float, float, float]) -> tuple[float, float, float]:
    value = r.raw(key, list(default))
    if (
        not isinstance(value, (list, tuple))
        or len(value) not in (1, 3)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(f"{r.where(key)}: expected one or three numbers (a,b,c), got {value!r}")
    vals = [float(v) for v in value] * (3 if len(value) == 1 else 1)
    return (vals[0], vals[1], vals[2])


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image (HxWxC uint8, BGR as OpenCV reads it) becomes the model's input tensor.

    ``size`` is the network input (height, width); ``None`` takes it from the model's fixed input
    shape, else (dynamic height/width) from the optimization profile's ``opt`` shape, or, with
    ``resize="none"``, the image's own size rounded up to a multiple of ``stride`` and kept within the
    profile (see :func:`edge.preprocess.network_size`).

    ``resize``: ``letterbox`` (keep the aspect ratio, pad with ``pad_value``, placed by ``pad_align``),
    ``stretch``, ``center-crop`` (resize the shorter side to ``size / crop_fraction``, then cut the
    centre: torchvision's Resize + CenterCrop, timm's ``crop_pct``) or ``none`` (no resize; top-left,
    scaled down only when the image is larger than the input).
    """

    input: str
    resize: str = "letterbox"
    color: str = "rgb"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str = "nchw"
    size: tuple[int, int] | None = None
    pad_value: int = 114
    stride: int = 32
    dtype: str = "float32"
    crop_fraction: float = 0.875
    pad_align: str = "center"

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ConfigError(f"preprocess.resize: {self.resize!r} is not one of {', '.join(RESIZE_MODES)}")
        if self.color not in COLORS:
            raise ConfigError(f"preprocess.color: {self.color!r} is not one of {', '.join(COLORS)}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"preprocess.layout: {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if any(s == 0 for s in self.std):
            raise ConfigError(f"preprocess.std: values must be non-zero, got {self.std}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) <= 0):
            raise ConfigError(f"preprocess.size: expected [height, width] > 0, got {self.size}")
        if self.stride <= 0:
            raise ConfigError(f"preprocess.stride: must be > 0, got {self.stride}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ConfigError(
                f"preprocess.crop_fraction: expected a fraction in (0, 1] such as 0.875, got {self.crop_fraction}"
            )
        if self.pad_align not in PAD_ALIGNS:
            raise ConfigError(f"preprocess.pad_align: {self.pad_align!r} is not one of {', '.join(PAD_ALIGNS)}")
        if not 0 <= self.pad_value <= 255:
            raise ConfigError(f"preprocess.pad_value: expected a pixel value 0..255, got {self.pad_value}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["size"] = list(self.size) if self.size is not None else None
        # written only when they matter, so bundles that do not use them stay readable by older runtimes
        if self.resize != "center-crop":
            del d["crop_fraction"]
        if self.pad_align == "center":
            del d["pad_align"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "preprocess") -> PreprocessSpec:
        r = Reader(data, path)
        size = r.raw("size", None)
        if size is not None and (
            not isinstance(size, (list, tuple)) or len(size) != 2 or not all(isinstance(v, int) for v in size)
        ):
            raise ConfigError(f"{r.where('size')}: expected [height, width], got {size!r}")
        spec = cls(
            input=r.str("input"),
            resize=r.str("resize", "letterbox", RESIZE_MODES),
            color=r.str("color", "rgb", COLORS),
            scale=r.float("scale", 1.0 / 255.0),
            mean=_triple(r, "mean", (0.0, 0.0, 0.0)),
            std=_triple(r, "std", (1.0, 1.0, 1.0)),
            layout=r.str("layout", "nchw", LAYOUTS),
            size=(int(size[0]), int(size[1])) if size is not None else None,
            pad_value=r.int("pad_value", 114, min=0, max=255),
            stride=r.int("stride", 32, min=1),
            dtype=r.str("dtype", "float32", ("float32", "float16", "uint8")),
            crop_fraction=r.float("crop_fraction", 0.875, min=0.0, max=1.0),
            pad_align=r.str("pad_align", "center", PAD_ALIGNS),
        )
        r.finish()
        return spec


@dataclass(frozen=True)
class PostprocessSpec:
    """How raw outputs become results: the task, the decoder for detectors, labels and thresholds.

    ``options`` carries decoder-specific settings (e.g. RetinaFace's prior ``variances``/``steps``/
    ``min_sizes``, ``class_agnostic`` NMS), validated by the decoder that reads them.
    """

    task: str = "raw"
    decoder: str | None = None
    labels: tuple[str, ...] = ()
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 300
    top_k: int = 5
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"postprocess.task: {self.task!r} is not one of {', '.join(TASKS)}")
        if self.task == "detect" and self.decoder not in DECODERS:
            raise ConfigError(
                f"postprocess.decoder: a detect task needs a decoder, one of {', '.join(DECODERS)}; got {self.decoder!r}"
            )
        if self.task in BOX_TASKS[1:] and self.decoder not in (None, *YOLO_TASK_DECODERS):
            raise ConfigError(
                f"postprocess.decoder: task {self.task} takes decoder {' or '.join(YOLO_TASK_DECODERS)} "
                f"(default yolov8); got {self.decoder!r}"
            )
        if not 0.0 <= self.score_threshold <= 1.0 or not 0.0 <= self.iou_threshold <= 1.0:
            raise ConfigError("postprocess: score_threshold and iou_threshold must lie in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "postprocess") -> PostprocessSpec:
        r = Reader(data, path)
        labels = r.list("labels", [])
        options = r.raw("options", {})
        if not isinstance(options, Mapping):
            raise ConfigError(f"{r.where('options')}: expected a mapping, got {options!r}")
        spec = cls(
            task=r.str("task", "raw", TASKS),
            decoder=r.str("decoder", None),
            labels=tuple(str(x) for x in labels),
            score_threshold=r.float("score_threshold", 0.25, min=0.0, max=1.0),
            iou_threshold=r.float("iou_threshold", 0.45, min=0.0, max=1.0),
            max_detections=r.int("max_detections", 300, min=1),
            top_k=r.int("top_k", 5, min=1),
            options=dict(options),
        )
        r.finish()
        return spec
