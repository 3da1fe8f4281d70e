"""The ONNX stages of a build, in order: load, simplify, shapes, specs, precision, accuracy gate.

Each stage is a module of builder-onnx (:mod:`builders.onnx_load`, :mod:`builders.simplify`,
:mod:`builders.shapes`, :mod:`builders.precision`, :mod:`builders.calibration`,
:mod:`builders.accuracy`); this module only strings them together for :func:`builders.assemble.build`
and derives the bundle's preprocess/postprocess specs from the options and the model.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from builders.onnx_load import describe_io, load_onnx
from builders.options import BuildOptions
from builders.shapes import fix_shapes, make_profiles
from builders.simplify import simplify
from edge.errors import ConfigError, EdgeError, first_line
from edge.manifest import TensorSpec
from edge.spec import BOX_TASKS, DECODERS, YOLO_TASK_DECODERS, PostprocessSpec, PreprocessSpec

log = logging.getLogger(__name__)

Profiles = dict[str, dict[str, tuple[int, ...]]]


@dataclass
class Prepared:
    """The precision-transformed model and everything the manifest says about it."""

    model: onnx.ModelProto
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    profiles: Profiles
    preprocess: PreprocessSpec
    simplifier: str | None
    calibration: dict[str, Any] | None
    accuracy: dict[str, Any] | None


def preprocess_spec(options: BuildOptions, inputs: list[TensorSpec]) -> PreprocessSpec:
    """The bundle's preprocess spec: the first input, the options' pixel transform, the spec's defaults."""
    if not inputs:
        raise ConfigError(f"{options.model}: the model has no inputs to feed")
    first = inputs[0]
    fields: dict[str, Any] = {"input": first.name}
    for key in ("color", "scale", "mean", "std", "resize", "layout", "size", "crop_fraction", "pad_align", "pad_value"):
        value = getattr(options, key)
        if value is not None:
            fields[key] = value
    if first.dtype in ("float32", "float16", "uint8"):
        fields["dtype"] = first.dtype
    return PreprocessSpec(**fields)


def postprocess_spec(options: BuildOptions, labels: tuple[str, ...]) -> PostprocessSpec:
    fields: dict[str, Any] = {"task": options.task, "decoder": options.decoder, "labels": labels}
    if options.score_threshold is not None:
        fields["score_threshold"] = options.score_threshold
    if options.iou_threshold is not None:
        fields["iou_threshold"] = options.iou_threshold
    for key in ("max_detections", "top_k"):
        if getattr(options, key) is not None:
            fields[key] = getattr(options, key)
    if options.agnostic_nms:
        fields["options"] = {"class_agnostic": True}
    return PostprocessSpec(**fields)


PROBE_MAX_BYTES = 512 << 20  # beyond this much weight a model with static outputs is checked on zeros, not run


def _decode_fails(arrays: dict[str, Any], postprocess: PostprocessSpec, net: tuple[int, int]) -> str | None:
    """The decoder's complaint about ``arrays`` (one line), None when it reads them."""
    from edge.decoders import decode
    from edge.preprocess import Meta
    from edge.results import Detections

    try:
        results = decode(arrays, postprocess, [Meta(net[0], net[1], net[0], net[1], 1.0, 1.0, 0.0, 0.0)])
    except EdgeError as exc:
        return first_line(exc, type(exc).__name__)
    except Exception as exc:  # a decoder tripping over these values says nothing about the layout: leave it to the run
        log.debug("decoder check inconclusive: %s", exc)
        return None
    for result in results:
        if isinstance(result, Detections) and len(result.scores):
            low, high = float(np.min(result.scores)), float(np.max(result.scores))
            if low < -1e-3 or high > 1 + 1e-3:
                return (
                    f"decoder {postprocess.decoder or postprocess.task} reads scores from {low:.3g} to {high:.3g} "
                    "(scores are 0..1): it takes other numbers (box offsets, keypoints) for class scores"
                )
    return None


def _flags(postprocess: PostprocessSpec) -> str:
    return f"--task {postprocess.task}" + (f" --decoder {postprocess.decoder}" if postprocess.decoder else "")


def _fitting(arrays: dict[str, Any], postprocess: PostprocessSpec, net: tuple[int, int]) -> str:
    """``; --task X --decoder Y reads it`` for the first task/decoder pair that reads ``arrays``, else ``""``."""
    # Most specific layouts first: yolov5 (objectness) reads many a foreign head without complaint.
    last = ("retinaface", "efficientnms", "ssd", "yolov5")
    pairs: list[tuple[str, str | None]] = [(postprocess.task, postprocess.decoder), ("classify", None)]
    pairs += [("detect", d) for d in DECODERS if d not in last]
    pairs += [(t, d) for t in ("segment", "obb", "pose") for d in YOLO_TASK_DECODERS]
    pairs += [("detect", d) for d in last]
    for labels in ((), postprocess.labels) if postprocess.labels else ((),):
        for task, decoder in pairs:
            if (task, decoder, labels) == (postprocess.task, postprocess.decoder, postprocess.labels):
                continue
            try:
                other = dataclasses.replace(postprocess, task=task, decoder=decoder, labels=labels)
            except EdgeError:
                continue
            if _decode_fails(arrays, other, net) is None:
                without = (
                    f" without the {len(postprocess.labels)} --labels" if postprocess.labels and not labels else ""
                )
                return f"; {_flags(other)}{without} reads it"
    return ""


def probe_outputs(
    model: onnx.ModelProto, inputs: list[TensorSpec], outputs: list[TensorSpec], profiles: Profiles
) -> tuple[dict[str, Any], tuple[int, int]] | None:
    """The model's outputs for one zero image at the profiles' opt shape (batch 1), from ONNX Runtime, and the
    input's height and width; zeros shaped like the declared outputs when the model cannot run here (plugins) or is
    too big to run twice; None when neither gives the shapes."""
    feeds = {}
    for spec in inputs:
        shape = list(profiles[spec.name]["opt"]) if spec.name in profiles else list(spec.shape)
        if not shape or any(d <= 0 for d in shape[1:]):
            return None
        shape[0] = 1 if spec.shape and spec.shape[0] < 0 else shape[0]
        feeds[spec.name] = np.zeros(shape, np.dtype(spec.dtype))
    first = feeds[inputs[0].name].shape if inputs else ()
    net = (int(first[-2]), int(first[-1])) if len(first) == 4 else (640, 640)
    static = all(o.shape and all(d > 0 for d in o.shape[1:]) for o in outputs)
    zeros = {o.name: np.zeros((1, *o.shape[1:]), np.float32) for o in outputs} if static else None
    from builders.onnx_load import nonstandard_ops
    from builders.shapes import ort_session

    if nonstandard_ops(model) or (static and model.ByteSize() > PROBE_MAX_BYTES):
        return (zeros, net) if zeros is not None else None
    try:
        values = ort_session(model).run(None, feeds)
    except Exception as exc:  # ORT's own exception family: the later stages report a model that does not run
        log.debug("decoder check: the model did not run on zeros: %s", exc)
        return (zeros, net) if zeros is not None else None
    return {o.name: v[:1] for o, v in zip(outputs, values)}, net


def check_decoder(probe: tuple[dict[str, Any], tuple[int, int]] | None, postprocess: PostprocessSpec) -> None:
    """Run the bundle's decoder on the model's outputs for one image (:func:`probe_outputs`), so that a decoder
    that cannot read this model (a pose head given ``--decoder yolov8``, a classifier given ``--task detect``,
    labels that do not fit the head, RetinaFace's offsets read as YOLO scores) fails here, in one line naming a
    task/decoder that reads it, before calibration and engine builds (``probe`` None: not checked)."""
    if postprocess.task not in (*BOX_TASKS, "classify") or probe is None:
        return
    arrays, net = probe
    problem = _decode_fails(arrays, postprocess, net)
    if problem is not None:
        hint = _fitting(arrays, postprocess, net)
        raise ConfigError(f"{_flags(postprocess)} does not fit this model: {problem}{hint}")


def feed_spec(spec: TensorSpec, profiles: Profiles) -> TensorSpec:
    """The input as calibration and accuracy images are fed: at the profile's opt shape when it is dynamic."""
    profile = profiles.get(spec.name)
    return TensorSpec(spec.name, spec.dtype, tuple(profile["opt"])) if profile else spec


def prepare(options: BuildOptions, precision: str, postprocess: PostprocessSpec) -> Prepared:
    model = load_onnx(options.model)
    simplifier = None
    if options.simplify is not False:
        # fp32 builds get the cheap tidy pass only unless --simplify: TensorRT and ONNX Runtime fold constants,
        # fuse BatchNorm and merge duplicates themselves, and onnxslim's import alone costs more than a small
        # model's whole TensorRT-RTX build; the precision conversions read the graph, so they get onnxslim.
        model, simplifier = simplify(model, slim=options.simplify is True or precision != "fp32")
    if options.shapes:
        model = fix_shapes(model, options.shapes)
    inputs, outputs = describe_io(model)
    preprocess = preprocess_spec(options, inputs)
    profiles = make_profiles(
        model, options.min_shapes, options.opt_shapes, options.max_shapes, shapes=options.shapes, preprocess=preprocess
    )
    if postprocess.task in (*BOX_TASKS, "classify"):
        check_decoder(probe_outputs(model, inputs, outputs, profiles), postprocess)
    reference = model
    calibration = accuracy = None
    if precision == "fp32":  # nothing to convert or check: skip importing the precision stages (OpenCV, ...)
        return Prepared(model, inputs, outputs, profiles, preprocess, simplifier, None, None)
    from builders.calibration import calibration_info, load_calibration
    from builders.precision import convert

    samples = []
    feed = feed_spec(inputs[0], profiles)
    holdout = None
    if options.calib is not None:
        if precision in ("int8", "fp8") and options.val is None:
            # The gate must not grade the model on the images its scales were fitted to: hold some out.
            from builders.calibration import split_holdout

            batch = feed.shape[0] if feed.shape and feed.shape[0] > 0 else 1
            holdout = split_holdout(options.calib, options.calib_limit, batch)
            samples = load_calibration(options.calib, preprocess, feed, subset=holdout.calibrate)
        else:
            samples = load_calibration(options.calib, preprocess, feed, limit=options.calib_limit)
        calibration = calibration_info(options.calib, samples, options.calib_method)
    model = convert(model, precision, samples, method=options.calib_method, fp16_io=options.fp16_io)
    bundle_io = (inputs, outputs, preprocess)
    if (
        options.fp16_io
    ):  # the bundle's tensors and its preprocess are float16 (samples stay as the FP32 model takes them)
        new_inputs, new_outputs = describe_io(model)
        new_preprocess = preprocess
        if new_inputs and new_inputs[0].dtype == "float16":
            new_preprocess = dataclasses.replace(preprocess, dtype="float16")
        bundle_io = (new_inputs, new_outputs, new_preprocess)
    if options.val is not None or samples:
        from builders.accuracy import compare_to_reference, gate

        if options.val is not None:
            val = load_calibration(options.val, preprocess, feed)
            validation: dict[str, Any] = {"source": f"--val {options.val.name}"}
        elif holdout is not None and options.calib is not None:
            val = load_calibration(options.calib, preprocess, feed, subset=holdout.validate)
            validation = holdout.info(options.calib)
            log.info(
                "accuracy check on %d image(s) held out from --calib (%d calibrate)",
                len(holdout.validate),
                len(holdout.calibrate),
            )
        else:  # fp16: the --calib images only fed the range check, nothing was fitted to them
            val = samples
            validation = {"source": "the --calib images (fp16: they only fed the range check)"}
        accuracy = compare_to_reference(
            reference, model, val, postprocess, preprocess, as_tensorrt=precision != "int8-dynamic"
        )
        accuracy["validation"] = validation
        gate(accuracy, options.max_drop, precision)
    return Prepared(model, *bundle_io[:2], profiles, bundle_io[2], simplifier, calibration, accuracy)
