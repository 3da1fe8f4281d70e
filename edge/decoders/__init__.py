"""Model outputs to results: one decoder module per model family, chosen by the bundle's postprocess spec.

    results = decode(outputs, spec, metas)     # one Result per image, boxes in ORIGINAL image pixels
    kept = nms(boxes, scores, class_ids, 0.45)  # indices, best first

``spec.task`` ``raw`` gives :class:`~edge.results.RawOutputs`, ``classify`` gives
:class:`~edge.results.Classifications`, ``detect`` gives :class:`~edge.results.Detections` from the decoder
named by ``spec.decoder``; ``segment``, ``pose`` and ``obb`` give ``Detections`` with masks, keypoints or rotated
boxes from the YOLO head layout ``spec.decoder`` names (``yolov8`` by default, ``yolov10`` for end-to-end rows).
See ``docs/decoders.md`` for the output layouts each one expects.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence

import numpy as np

from edge.decoders.nonmax import nms
from edge.errors import ConfigError
from edge.preprocess import Meta
from edge.results import Result
from edge.spec import PostprocessSpec

# decoder name (task name outside detect) -> module (each has ``decode(outputs, spec, metas) -> list[Result]``),
# imported on first use
MODULES = {
    "raw": "edge.decoders.raw",
    "classify": "edge.decoders.classify",
    "retinaface": "edge.decoders.retinaface",
    "yolov5": "edge.decoders.yolo",
    "yolov8": "edge.decoders.yolo",
    "yolov10": "edge.decoders.yolo",
    "rtdetr": "edge.decoders.yolo",
    "efficientnms": "edge.decoders.efficientnms",
    "ssd": "edge.decoders.ssd",
    "segment": "edge.decoders.segment",
    "pose": "edge.decoders.pose",
    "obb": "edge.decoders.obb",
}


def decode(outputs: Mapping[str, np.ndarray], spec: PostprocessSpec, metas: Sequence[Meta]) -> list[Result]:
    """Decode one batch of outputs: one result per entry of ``metas`` (the images, in batch order)."""
    if not metas:
        raise ConfigError("decode: no images (metas is empty); pass the Meta of every preprocessed image")
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    name = spec.task if spec.task != "detect" else str(spec.decoder)
    if name not in MODULES:
        raise ConfigError(f"postprocess.decoder: no decoder {name!r}; known: {', '.join(sorted(MODULES))}")
    module = importlib.import_module(MODULES[name])
    results: list[Result] = module.decode(arrays, spec, metas)
    return results


__all__ = ["decode", "nms"]
