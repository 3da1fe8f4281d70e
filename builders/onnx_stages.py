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

import onnx

from builders.onnx_load import describe_io, load_onnx
from builders.options import BuildOptions
from builders.shapes import fix_shapes, make_profiles
from builders.simplify import simplify
from edge.errors import ConfigError, EdgeError, first_line
from edge.manifest import TensorSpec
from edge.spec import BOX_TASKS, PostprocessSpec, PreprocessSpec

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


def check_decoder(outputs: list[TensorSpec], postprocess: PostprocessSpec) -> None:
    """Run the bundle's decoder on zeros shaped like the model's outputs (batch 1), so that a decoder
    that cannot read this model (a pose head given ``--decoder yolov8``, a classifier given ``--task detect``,
    labels that do not fit the head) fails here, in one line, before calibration and engine builds."""
    if postprocess.task not in (*BOX_TASKS, "classify"):
        return
    if any(not o.shape or any(d <= 0 for d in o.shape[1:]) for o in outputs):
        return  # axes beyond the batch unknown until the model runs: the decoder checks at run time
    import numpy as np

    from edge.decoders import decode
    from edge.preprocess import Meta

    arrays = {o.name: np.zeros(tuple(d if d > 0 else 1 for d in o.shape), np.float32) for o in outputs}
    try:
        decode(arrays, postprocess, [Meta(640, 640, 640, 640, 1.0, 1.0, 0.0, 0.0)])
    except EdgeError as exc:
        flags = f"--task {postprocess.task}" + (f" --decoder {postprocess.decoder}" if postprocess.decoder else "")
        raise ConfigError(f"{flags} does not fit this model: {first_line(exc, type(exc).__name__)}") from None
    except Exception as exc:  # a decoder tripping over zeros says nothing about the layout: leave it to the run
        log.debug("decoder check on zeros inconclusive: %s", exc)


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
    check_decoder(outputs, postprocess)
    preprocess = preprocess_spec(options, inputs)
    profiles = make_profiles(
        model, options.min_shapes, options.opt_shapes, options.max_shapes, shapes=options.shapes, preprocess=preprocess
    )
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
