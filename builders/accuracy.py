"""Stage 5: how far the converted model strays from the FP32 reference, and the ``--max-drop`` gate.

:func:`compare_to_reference` runs both models through ONNX Runtime on the same preprocessed inputs (calibration or
``--val`` images). The reference runs as usual; the converted model runs with ONNX Runtime's graph
optimisations off, so its Q/DQ pairs act as plain scale-and-round steps around FP32 arithmetic, which
is what TensorRT computes (ONNX Runtime's own fused INT8/FP8 CPU kernels round differently).

Per output: ``cosine`` (mean over samples) and ``cosine_min``, ``max_abs_error``, ``peak_relative_error``
(largest ``|a-b|`` over the largest ``|a|``) and ``l1_relative_error`` (sum ``|a-b|`` over sum ``|a|``).
Then one task-level ``score``:

- detectors (``postprocess.task`` detect, segment, pose or obb): ``box_recall``, the share of reference boxes that the
  converted model also finds (same class, IoU >= 0.5). So that a score drifting across the threshold, or
  NMS keeping the other of two overlapping boxes, is not a miss, the converted model's boxes are taken
  down to half the score threshold, before NMS and without the max-detections cap; the boxes it
  reports above the threshold that the reference lacks (even at half) are counted as ``extra``;
- classifiers: ``top1_agreement``, the share of samples whose top-1 class is unchanged;
- anything else, or a detector whose reference finds no box in the samples: the lowest per-output cosine.

``drop = 1 - score``; :func:`gate` fails the build when ``drop > max_drop``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx

from builders.calibration import Sample
from builders.onnx_load import lowest_ir_version
from builders.progress_bar import ProgressBar
from builders.shapes import ort_error_summary, ort_session
from edge.errors import BuildError
from edge.spec import BOX_TASKS, PostprocessSpec, PreprocessSpec

log = logging.getLogger(__name__)

IOU = 0.5
LENIENT_MAX_DETECTIONS = 100_000
CONFIDENCE = 0.95
Z95 = 1.959964  # two-sided 95 % normal quantile
BOOTSTRAP_ROUNDS = 2000
# Fewer measurements than this (reference boxes for box recall, images otherwise) and the score's interval is
# too wide for a gate of a few per cent to mean much: the report says so and the build log warns.
MIN_MEASUREMENTS = 30


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (good at small ``trials`` and at 0 % / 100 %)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z / denom * float(np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)))
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of ``values`` (seeded: the same data, the same interval)."""
    data = np.asarray(values, np.float64)
    if data.size < 2:
        value = float(data.mean()) if data.size else 0.0
        return value, value
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(rounds, data.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def _simulation_session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = lowest_ir_version(model).SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes ``a [N,4]`` and ``b [M,4]``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return (inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)).astype(np.float32)


def matched_mask(ref: Any, cand: Any, iou: float = IOU) -> np.ndarray:
    """Per reference detection: does it find a candidate of the same class at IoU >= ``iou`` (greedy, 1:1)."""
    found = np.zeros(len(ref), bool)
    if len(ref) == 0 or len(cand) == 0:
        return found
    ious = iou_matrix(np.asarray(ref.boxes), np.asarray(cand.boxes))
    same = np.asarray(ref.class_ids)[:, None] == np.asarray(cand.class_ids)[None, :]
    ious = np.where(same, ious, 0.0)
    used: set[int] = set()
    for i in np.argsort(-np.asarray(ref.scores)):
        for j in np.argsort(-ious[i]):
            if ious[i, j] < iou:
                break
            if int(j) not in used:
                used.add(int(j))
                found[i] = True
                break
    return found


def match_boxes(ref: Any, cand: Any, iou: float = IOU) -> int:
    """How many reference detections find a candidate of the same class at IoU >= ``iou`` (greedy, 1:1)."""
    return int(matched_mask(ref, cand, iou).sum())


def fp16_rounded(sample: Sample) -> Sample:
    """``sample`` with its float inputs rounded to FP16 and back: a change of at most 2^-11 relative, below
    anything a camera or JPEG can tell apart, and the size of the rounding every FP16 layer adds."""
    return {k: v.astype(np.float16).astype(v.dtype) if v.dtype.kind == "f" else v for k, v in sample.items()}


class _OutputStats:
    def __init__(self) -> None:
        self.cosines: list[float] = []
        self.max_abs = 0.0
        self.ref_peak = 0.0
        self.abs_sum = 0.0
        self.ref_sum = 0.0
        self.non_finite = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        a64 = np.asarray(a, np.float64).ravel()
        b64 = np.asarray(b, np.float64).ravel()
        finite = np.isfinite(b64)
        self.non_finite += int(b64.size - finite.sum())
        b64 = np.where(finite, b64, 0.0)
        diff = np.abs(a64 - b64)
        self.max_abs = max(self.max_abs, float(diff.max(initial=0.0)))
        self.ref_peak = max(self.ref_peak, float(np.abs(a64).max(initial=0.0)))
        self.abs_sum += float(diff.sum())
        self.ref_sum += float(np.abs(a64).sum())
        na, nb = float(np.linalg.norm(a64)), float(np.linalg.norm(b64))
        if na == 0.0 and nb == 0.0:
            cos = 1.0
        elif na == 0.0 or nb == 0.0 or self.non_finite:
            cos = 0.0
        else:
            cos = float(a64 @ b64) / (na * nb)
        self.cosines.append(cos)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cosine": round(float(np.mean(self.cosines)), 6),
            "cosine_min": round(float(np.min(self.cosines)), 6),
            "max_abs_error": float(f"{self.max_abs:.6g}"),
            "peak_relative_error": float(f"{self.max_abs / self.ref_peak:.6g}") if self.ref_peak else 0.0,
            "l1_relative_error": float(f"{self.abs_sum / self.ref_sum:.6g}") if self.ref_sum else 0.0,
            "non_finite": self.non_finite,
        }


def _metas(sample: Sample, preprocess: PreprocessSpec | None) -> list[Any]:
    """Identity Metas (network pixels = image pixels) for the batch in ``sample``."""
    from edge.preprocess import Meta

    name = preprocess.input if preprocess is not None and preprocess.input in sample else None
    tensor = sample[name] if name else next((v for v in sample.values() if v.ndim == 4), next(iter(sample.values())))
    nhwc = preprocess is not None and preprocess.layout == "nhwc"
    if tensor.ndim == 4:
        h, w = (tensor.shape[1], tensor.shape[2]) if nhwc else (tensor.shape[2], tensor.shape[3])
    else:
        h = w = 1
    batch = tensor.shape[0] if tensor.ndim else 1
    return [Meta(h, w, h, w, 1.0, 1.0, 0.0, 0.0) for _ in range(batch)]


def compare_to_reference(
    reference: onnx.ModelProto,
    candidate: onnx.ModelProto,
    samples: Sequence[Sample],
    postprocess: PostprocessSpec | None = None,
    preprocess: PreprocessSpec | None = None,
    *,
    label: str = "accuracy check",
    as_tensorrt: bool = True,
) -> dict[str, Any]:
    """Compare ``candidate`` with the FP32 ``reference`` on ``samples``; a JSON-able dict (see module doc)."""
    if not samples:
        raise BuildError("accuracy check: no samples (give --calib or --val images)")
    notes: list[str] = []
    decode: Callable[..., list[Any]] | None = None
    task = postprocess.task if postprocess is not None else "raw"
    if task in (*BOX_TASKS, "classify"):
        try:
            from edge.decoders import decode as _decode

            decode = _decode
        except ImportError as exc:  # only while the decoders package is absent
            notes.append(f"{task} metrics skipped: edge.decoders is not importable ({exc})")
    try:
        ref_session = ort_session(reference)
        cand_session = _simulation_session(candidate) if as_tensorrt else ort_session(candidate)
    except Exception as exc:  # ORT raises its own untyped exception family
        raise BuildError(f"accuracy check: ONNX Runtime cannot load a model: {ort_error_summary(str(exc))}") from None
    names = [o.name for o in ref_session.get_outputs()]
    cand_types = {i.name: i.type for i in cand_session.get_inputs()}
    stats = {name: _OutputStats() for name in names}
    boxes = {"reference": 0, "matched": 0, "extra": 0, "unstable": 0}
    top1 = [0, 0]
    # The lenient decode takes scores down to half the threshold, keeps every box NMS would drop and is not
    # cut at max_detections: in a crowded scene a score moving in the 4th digit changes which of two
    # overlapping boxes NMS keeps, and a full cap drops boxes; neither is the precision's doing.
    low = (
        dataclasses.replace(
            postprocess,
            score_threshold=postprocess.score_threshold / 2,
            iou_threshold=1.0,
            max_detections=LENIENT_MAX_DETECTIONS,
        )
        if postprocess
        else None
    )
    with ProgressBar(len(samples), label) as bar:
        for sample in samples:
            try:
                ref = dict(zip(names, ref_session.run(names, sample)))
                got = dict(zip(names, cand_session.run(names, _as_inputs(sample, cand_types))))
            except Exception as exc:  # ORT raises its own untyped exception family
                raise BuildError(f"accuracy check: inference failed: {ort_error_summary(str(exc))}") from None
            for name in names:
                stats[name].add(ref[name], got[name])
            if decode is not None and postprocess is not None and low is not None:
                metas = _metas(sample, preprocess)
                if task in BOX_TASKS:
                    ref_hi, cand_lo = decode(ref, postprocess, metas), decode(got, low, metas)
                    cand_hi, ref_lo = decode(got, postprocess, metas), decode(ref, low, metas)
                    # The reference's own noise floor: boxes it loses itself when its input moves by one FP16
                    # rounding sit on a knife edge of this model; they say nothing about the conversion.
                    twin = dict(zip(names, _run(ref_session, names, fp16_rounded(sample))))
                    twin_lo = decode(twin, low, metas)
                    for r, c_lo, c_hi, r_lo, t_lo in zip(ref_hi, cand_lo, cand_hi, ref_lo, twin_lo):
                        stable = matched_mask(r, t_lo)
                        boxes["unstable"] += int(len(r) - stable.sum())
                        boxes["reference"] += int(stable.sum())
                        boxes["matched"] += int((stable & matched_mask(r, c_lo)).sum())
                        boxes["extra"] += len(c_hi) - match_boxes(c_hi, r_lo)
                else:
                    for r, c in zip(decode(ref, postprocess, metas), decode(got, postprocess, metas)):
                        top1[1] += 1
                        top1[0] += int(len(r) > 0 and len(c) > 0 and int(r.class_ids[0]) == int(c.class_ids[0]))
            bar.advance()
    outputs = {name: s.to_dict() for name, s in stats.items()}
    worst = min(outputs, key=lambda n: outputs[n]["cosine"])
    result: dict[str, Any] = {
        "reference": "fp32 model, ONNX Runtime CPU",
        "candidate": "converted model, ONNX Runtime CPU with graph optimizations off (Q/DQ as TensorRT computes)"
        if as_tensorrt
        else "converted model, ONNX Runtime CPU (as the bundle runs it)",
        "samples": len(samples),
        "outputs": outputs,
        "boxes": None,
        "top1_agreement": None,
    }
    images = sum(_batch(sample) for sample in samples)
    result["images"] = images
    metric, score = "cosine", outputs[worst]["cosine"]
    if decode is not None and task in BOX_TASKS:
        recall = boxes["matched"] / boxes["reference"] if boxes["reference"] else None
        result["boxes"] = {"iou": IOU, **boxes, "recall": None if recall is None else round(recall, 6)}
        if boxes["unstable"]:
            unstable = (
                f"{boxes['unstable']} reference box(es) not graded: the FP32 model itself loses them when its input "
                "is rounded to FP16 (at most 2^-11 relative), so they sit on a knife edge of the model"
            )
            notes.append(unstable)
            log.info("accuracy check: %s", unstable)
        if recall is None:
            notes.append("the reference finds no box in these samples: gated on output cosine instead")
        else:
            metric, score = "box_recall", recall
    elif decode is not None and task == "classify" and top1[1]:
        metric, score = "top1_agreement", top1[0] / top1[1]
        result["top1_agreement"] = round(score, 6)
    if metric == "cosine":
        notes.append(f"lowest cosine: output {worst!r}")
        lo, hi = bootstrap_interval(stats[worst].cosines)
        interval: dict[str, Any] = {"method": f"bootstrap over {len(samples)} samples", "n": len(samples)}
    elif metric == "box_recall":
        lo, hi = wilson_interval(boxes["matched"], boxes["reference"])
        interval = {"method": f"Wilson, {boxes['reference']} reference boxes", "n": boxes["reference"]}
    else:
        lo, hi = wilson_interval(top1[0], top1[1])
        interval = {"method": f"Wilson, {top1[1]} images", "n": top1[1]}
    result["confidence"] = {"level": CONFIDENCE, "low": round(lo, 6), "high": round(hi, 6), **interval}
    if interval["n"] < MIN_MEASUREMENTS:
        unit = "reference boxes" if metric == "box_recall" else "images"
        small = (
            f"only {interval['n']} {unit} measured: too few for the {metric} to be reliable "
            f"(95 % interval {lo:.4f}..{hi:.4f}); give --val with more images"
        )
        notes.append(small)
        log.warning("accuracy check: %s", small)
    result.update(metric=metric, score=round(score, 6), drop=round(1.0 - score, 6), notes=notes)
    return result


def _run(session: Any, names: list[str], sample: Sample) -> list[Any]:
    try:
        return list(session.run(names, sample))
    except Exception as exc:  # ORT raises its own untyped exception family
        raise BuildError(f"accuracy check: inference failed: {ort_error_summary(str(exc))}") from None


def _as_inputs(sample: Sample, types: dict[str, str]) -> Sample:
    """``sample`` with float16 arrays where the candidate takes float16 (an ``--fp16-io`` model)."""
    return {k: v.astype(np.float16) if types.get(k) == "tensor(float16)" else v for k, v in sample.items()}


def _batch(sample: Sample) -> int:
    first = next(iter(sample.values()))
    return int(first.shape[0]) if first.ndim else 1


HINTS = {
    "fp16": "give --calib with representative images (the FP16 range check keeps overflowing nodes in FP32), "
    "or build --precision fp32",
    "int8-dynamic": "dynamic quantization costs this model too much: use --precision fp16, or int8 with --calib DIR",
}
INT8_HINT = "try another --calib-method, more or more representative calibration images, or --precision fp16"


def gate(result: dict[str, Any], max_drop: float | None, precision: str = "int8") -> None:
    """Raise a BuildError with the numbers when ``result["drop"] > max_drop``; records the verdict in ``result``.

    A detector gate with no reference box to find is refused: box recall is then unmeasured, and the
    cosine it would fall back to says nothing about the boxes."""
    if max_drop is None:
        return
    boxes = result.get("boxes")
    if boxes is not None and not boxes["reference"]:
        raise BuildError(
            f"accuracy gate: the FP32 model finds no box in the {result.get('images', result['samples'])} "
            "validation image(s), so box recall cannot be measured; give --val DIR with images showing the "
            "objects (or lower --score-threshold), or drop --max-drop"
        )
    result["max_drop"] = max_drop
    result["passed"] = result["drop"] <= max_drop
    c = result.get("confidence")
    if c and (c["low"] < 1.0 - max_drop) != (c["high"] < 1.0 - max_drop):
        note = (
            f"the {result['metric']}'s 95 % interval {c['low']:.4f}..{c['high']:.4f} straddles the gate's "
            f"{1.0 - max_drop:.4f}: {'passed' if result['passed'] else 'failed'} on the point estimate, not conclusively"
        )
        result.setdefault("notes", []).append(note)
        log.warning("accuracy gate: %s", note)
    if result["passed"]:
        return
    parts = [f"{result['metric']} {result['score']:.4f} vs the FP32 reference on {result['samples']} samples"]
    if result.get("confidence"):
        c = result["confidence"]
        parts[0] += f" (95 % interval {c['low']:.4f}..{c['high']:.4f})"
    if result.get("boxes"):
        b = result["boxes"]
        knife = f" ({b['unstable']} more not graded: the FP32 model loses them itself)" if b.get("unstable") else ""
        parts.append(f"{b['matched']}/{b['reference']} reference boxes found{knife}, {b['extra']} extra")
    worst = min(result["outputs"].items(), key=lambda kv: kv[1]["cosine"])
    parts.append(f"lowest output cosine {worst[1]['cosine']:.4f}: {worst[0]}")
    raise BuildError(
        f"accuracy gate: drop {result['drop']:.2%} exceeds --max-drop {max_drop:.2%} ({'; '.join(parts)}); "
        f"{HINTS.get(precision, INT8_HINT)}"
    )
