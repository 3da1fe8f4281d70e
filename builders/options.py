"""Everything ``edge build`` can be told, as one dataclass validated once, before any work starts.

The CLI (``edge build``, ``scripts/build_engine.py``) and Python callers fill the same
:class:`BuildOptions`; ``__post_init__`` rejects impossible combinations with a
:class:`~edge.errors.ConfigError` naming the flag, a precision a named target lacks included (before
asking for ``--calib``). Checks that need this machine (``auto``) or the model (input names) happen in
:mod:`builders.targets` and :mod:`builders.assemble`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platforms
from builders.engine_trt import HARDWARE_COMPATIBILITY
from edge.errors import ConfigError
from edge.manifest import PRECISIONS
from edge.spec import (
    BOX_TASKS,
    COLORS,
    DECODERS,
    DECODERS_WITHOUT_CLASS_NMS,
    LAYOUTS,
    PAD_ALIGNS,
    RESIZE_MODES,
    TASKS,
    YOLO_TASK_DECODERS,
)
from platforms import Platform

CALIB_METHODS = ("entropy", "minmax", "percentile")
Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class BuildOptions:
    """One build: model in, bundle out, targets, precision, shapes, calibration, engine and spec settings.

    ``precision=None`` picks ``fp16`` when every target lists it, else ``fp32``. Preprocess fields left
    at ``None`` take the spec's defaults (:class:`edge.spec.PreprocessSpec`); ``size=None`` takes the
    model's fixed input size.
    """

    model: Path
    output: Path
    targets: tuple[str, ...] = ("auto",)
    precision: str | None = None
    # shapes (parsed NAME -> dims; see builders.shapes.parse_shapes)
    shapes: Shapes = field(default_factory=dict)
    min_shapes: Shapes = field(default_factory=dict)
    opt_shapes: Shapes = field(default_factory=dict)
    max_shapes: Shapes = field(default_factory=dict)
    # calibration and the accuracy gate
    calib: Path | None = None
    calib_method: str = "entropy"
    calib_limit: int | None = None
    val: Path | None = None
    max_drop: float | None = None
    # engines
    dla: int | None = None
    timing_cache: Path | None = None
    workspace_mib: int | None = None
    optimization_level: int | None = None
    hardware_compatibility: str | None = None
    version_compatible: bool = False
    skip_unavailable: bool = False
    simplify: bool | None = None  # None: onnxslim for fp16/int8/fp8/int8-dynamic, the tidy pass for fp32
    fp16_io: bool = False  # --fp16-io: float16 model inputs and outputs (default float32, casts inside)
    # preprocess spec
    color: str | None = None
    scale: float | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: str | None = None
    layout: str | None = None
    size: tuple[int, int] | None = None
    crop_fraction: float | None = None
    pad_align: str | None = None
    pad_value: int | None = None
    # postprocess spec
    task: str = "raw"
    decoder: str | None = None
    labels: Path | None = None
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    top_k: int | None = None
    agnostic_nms: bool = False
    # bundle
    name: str | None = None
    force: bool = False
    command: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", Path(self.model))
        object.__setattr__(self, "output", Path(self.output))
        if not self.targets:
            raise ConfigError("--target: give at least one target (or `auto` for this machine)")
        if len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"--target: a target is given twice ({', '.join(self.targets)})")
        _choice("--precision", self.precision, PRECISIONS)
        _choice("--calib-method", self.calib_method, CALIB_METHODS)
        _choice("--color", self.color, COLORS)
        _choice("--resize", self.resize, RESIZE_MODES)
        _choice("--layout", self.layout, LAYOUTS)
        _choice("--task", self.task, TASKS)
        _choice("--decoder", self.decoder, DECODERS)
        _choice("--hardware-compatibility", self.hardware_compatibility, tuple(HARDWARE_COMPATIBILITY))
        if self.task == "detect" and self.decoder is None:
            raise ConfigError(f"--task detect needs --decoder (one of {', '.join(DECODERS)})")
        if self.decoder is not None and self.task not in BOX_TASKS:
            raise ConfigError(f"--decoder {self.decoder} needs --task {', '.join(BOX_TASKS[:-1])} or {BOX_TASKS[-1]}")
        if self.task in BOX_TASKS[1:] and self.decoder not in (None, *YOLO_TASK_DECODERS):
            raise ConfigError(
                f"--task {self.task} takes --decoder {' or '.join(YOLO_TASK_DECODERS)} (Ultralytics heads), "
                f"not {self.decoder}"
            )
        _check_precision_on_named_targets(self.precision, self.targets)
        if self.precision in ("int8", "fp8") and self.calib is None:
            raise ConfigError(
                f"--precision {self.precision} needs --calib DIR (a folder of representative images, a few "
                "hundred is typical) or --calib FILE.npy (preprocessed input tensors)"
            )
        if self.fp16_io and self.precision != "fp16":
            raise ConfigError("--fp16-io: float16 inputs and outputs come with --precision fp16 (give it explicitly)")
        if self.calib is not None and self.precision == DYNAMIC_INT8:
            raise ConfigError(
                "--calib: --precision int8-dynamic calibrates nothing (weights are quantized ahead, activations at "
                "run time); give --val DIR for the accuracy check"
            )
        if self.calib is not None and self.precision == "fp32":
            raise ConfigError("--calib is used by --precision fp16 (range check), int8 and fp8, not fp32")
        if self.max_drop is not None and not 0.0 <= self.max_drop <= 1.0:
            raise ConfigError(f"--max-drop: expected a fraction in [0, 1] (e.g. 0.01 for 1%), got {self.max_drop}")
        if (self.val is not None or self.max_drop is not None) and self.precision == "fp32":
            raise ConfigError("--val and --max-drop check a reduced precision against FP32: not with --precision fp32")
        if self.max_drop is not None and self.val is None and self.calib is None:
            raise ConfigError(
                "--max-drop needs images to measure on: give --val DIR"
                + ("" if self.precision == DYNAMIC_INT8 else " (or --calib DIR)")
            )
        _positive("--workspace", self.workspace_mib)
        _positive("--calib-limit", self.calib_limit)
        if self.dla is not None and self.dla < 0:
            raise ConfigError(f"--dla: a DLA core number is 0 or more, got {self.dla}")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise ConfigError(f"--opt-level: expected 0..5 (TensorRT's default is 3), got {self.optimization_level}")
        if self.scale is not None and self.scale <= 0:
            raise ConfigError(f"--scale: expected a positive number such as 0.00392 (1/255), got {self.scale}")
        if self.std is not None and any(s == 0 for s in self.std):
            raise ConfigError(f"--std: values must be non-zero, got {self.std}")
        if self.size is not None and min(self.size) <= 0:
            raise ConfigError(f"--size: expected HxW with positive numbers, got {self.size}")
        for flag, threshold in (("--score-threshold", self.score_threshold), ("--iou-threshold", self.iou_threshold)):
            if threshold is not None and not 0.0 <= threshold <= 1.0:
                raise ConfigError(f"{flag}: expected a value in [0, 1], got {threshold}")
        _check_spec_options(self)
        for flag, path in (("--calib", self.calib), ("--val", self.val), ("--labels", self.labels)):
            if path is not None and not Path(path).exists():
                raise ConfigError(f"{flag} {path}: no such file or folder")
        if self.labels is not None and not Path(self.labels).is_file():
            raise ConfigError(f"--labels {self.labels}: expected a text file with one label per line")
        if self.name is not None and not self.name.strip():
            raise ConfigError("--name: must not be empty")

    @property
    def model_name(self) -> str:
        return self.name or self.model.stem


def _check_spec_options(o: BuildOptions) -> None:
    """The newer preprocess and decoder flags: ranges, and the task or resize mode each one needs."""
    if o.crop_fraction is not None and not 0.0 < o.crop_fraction <= 1.0:
        raise ConfigError(f"--crop-fraction: expected a fraction in (0, 1] such as 0.875, got {o.crop_fraction}")
    if o.crop_fraction is not None and o.resize != "center-crop":
        raise ConfigError(
            f"--crop-fraction is used by --resize center-crop (or --preset torchvision/tf), "
            f"not --resize {o.resize or 'letterbox (the default)'}"
        )
    _choice("--pad-align", o.pad_align, PAD_ALIGNS)
    if o.pad_value is not None and not 0 <= o.pad_value <= 255:
        raise ConfigError(f"--pad-value: expected a pixel value 0..255, got {o.pad_value}")
    _positive("--max-detections", o.max_detections)
    _positive("--top-k", o.top_k)
    if o.max_detections is not None and o.task not in BOX_TASKS:
        raise ConfigError(f"--max-detections is a detector setting: it needs --task {'|'.join(BOX_TASKS)}")
    if o.top_k is not None and o.task != "classify":
        raise ConfigError("--top-k is the number of classes a classifier reports: it needs --task classify")
    if o.agnostic_nms and (o.task not in BOX_TASKS or o.decoder in DECODERS_WITHOUT_CLASS_NMS):
        why = (
            f"decoder {o.decoder} does no class-aware NMS of its own"
            if o.task in BOX_TASKS
            else f"it needs --task {'|'.join(BOX_TASKS)}"
        )
        raise ConfigError(f"--agnostic-nms: {why}")


DYNAMIC_INT8 = "int8-dynamic"


def target_supports(target: Platform, precision: str) -> bool:
    """``int8-dynamic`` is ONNX Runtime's alone: any target without TensorRT; else the target's precisions."""
    if precision == DYNAMIC_INT8:
        return target.trt_flavour is None
    return target.supports(precision)


def precision_error(precision: str, target: Platform) -> ConfigError:
    """The error for a precision ``target``'s hardware lacks: the target's name and the precisions it has."""
    if precision == DYNAMIC_INT8:
        return ConfigError(
            f"--precision int8-dynamic: target {target.id} needs a TensorRT plan, and ONNX Runtime's dynamic "
            "quantization (DynamicQuantizeLinear + MatMulInteger) cannot be one; build it for --target cpu only, "
            "or use --precision int8 --calib DIR for TensorRT"
        )
    return ConfigError(
        f"--precision {precision}: target {target.id} ({target.name}) does not support it; its precisions are "
        f"{', '.join(target.precisions)}"
    )


def _check_precision_on_named_targets(precision: str | None, targets: tuple[str, ...]) -> None:
    """Refuse a precision a named target lacks before asking for its other flags (``--calib``); ``auto``
    is this machine, resolved (and checked) when the build is planned."""
    if precision is None:
        return
    for target_id in targets:
        if target_id.strip().lower() != "auto":
            target = platforms.get_target(target_id)
            if not target_supports(target, precision):
                raise precision_error(precision, target)


def _choice(flag: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise ConfigError(f"{flag}: {value!r} is not one of {', '.join(choices)}")


def _positive(flag: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{flag}: expected a positive number, got {value}")
