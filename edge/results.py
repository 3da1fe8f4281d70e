"""One canonical, typed result per task, consumed by every sink, overlay and the HTTP API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.errors import ConfigError


@dataclass(frozen=True)
class Detections:
    """Boxes in original-image pixels (xyxy), with scores, class ids and what the task adds.

    The one result of every box task: ``detect`` fills boxes, scores and class ids; ``pose`` adds
    ``keypoints`` and ``keypoint_scores``; ``segment`` adds ``masks``; ``obb`` adds ``rotated`` (and ``boxes``
    holds each rotated box's axis-aligned bounds, clipped to the image). Everything is in original-image pixels.
    Filter with a boolean mask or index array: ``dets[dets.scores > 0.5]``.
    """

    boxes: np.ndarray  # [N, 4] float32 x1, y1, x2, y2
    scores: np.ndarray  # [N] float32
    class_ids: np.ndarray  # [N] int64
    labels: Sequence[str] = ()  # label names by class id (the bundle's labels)
    keypoints: np.ndarray | None = None  # [N, K, 2] float32 x, y, e.g. RetinaFace's 5 landmarks, COCO's 17
    track_ids: np.ndarray | None = None  # [N] int64 from a tracker (edge.events); -1: not (yet) in a track
    keypoint_scores: np.ndarray | None = None  # [N, K] float32 visibility/confidence of each keypoint (pose)
    masks: np.ndarray | None = None  # [N, H, W] bool, one instance mask per box at the image's size (segment)
    rotated: np.ndarray | None = None  # [N, 5] float32 cx, cy, w, h, angle in radians (obb)

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ConfigError(f"Detections.boxes: expected shape [N, 4], got {self.boxes.shape}")
        if self.scores.shape != (n,) or self.class_ids.shape != (n,):
            raise ConfigError(
                f"Detections: scores {self.scores.shape} and class_ids {self.class_ids.shape} must be [{n}] like boxes"
            )
        if self.keypoints is not None and (self.keypoints.ndim != 3 or len(self.keypoints) != n):
            raise ConfigError(f"Detections.keypoints: expected [N, K, 2], got {self.keypoints.shape}")
        if self.track_ids is not None and self.track_ids.shape != (n,):
            raise ConfigError(f"Detections.track_ids: expected [{n}] like boxes, got {self.track_ids.shape}")
        if self.keypoint_scores is not None and (
            self.keypoints is None or self.keypoint_scores.shape != self.keypoints.shape[:2]
        ):
            raise ConfigError(
                f"Detections.keypoint_scores: expected [N, K] like keypoints, got {self.keypoint_scores.shape}"
            )
        if self.masks is not None and (self.masks.ndim != 3 or len(self.masks) != n):
            raise ConfigError(f"Detections.masks: expected [N, H, W], got {self.masks.shape}")
        if self.rotated is not None and self.rotated.shape != (n, 5):
            raise ConfigError(f"Detections.rotated: expected [N, 5] (cx, cy, w, h, angle), got {self.rotated.shape}")

    @classmethod
    def empty(cls, labels: Sequence[str] = ()) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), labels)

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: Any) -> Detections:
        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return Detections(
            self.boxes[index],
            self.scores[index],
            self.class_ids[index],
            self.labels,
            keypoints=take(self.keypoints),
            track_ids=take(self.track_ids),
            keypoint_scores=take(self.keypoint_scores),
            masks=take(self.masks),
            rotated=take(self.rotated),
        )

    def polygons(self) -> np.ndarray:
        """``[N, 4, 2]`` corners of each box: the rotated box for ``obb``, else the axis-aligned one."""
        if self.rotated is not None:
            return rotated_corners(self.rotated)
        x1, y1, x2, y2 = (self.boxes[:, i] for i in range(4))
        return np.stack([np.stack(p, -1) for p in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))], 1)

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def to_json(self) -> list[dict[str, Any]]:
        """The list ``edge infer --json``, the JSONL sink and ``POST /v1/infer`` all emit."""
        out = []
        for i in range(len(self)):
            item: dict[str, Any] = {
                "box": [round(float(v), 2) for v in self.boxes[i]],
                "score": round(float(self.scores[i]), 5),
                "class_id": int(self.class_ids[i]),
                "label": self.label(int(self.class_ids[i])),
            }
            if self.track_ids is not None:
                item["track_id"] = int(self.track_ids[i]) if self.track_ids[i] >= 0 else None
            if self.keypoints is not None:
                item["keypoints"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.keypoints[i]]
            if self.keypoint_scores is not None:
                item["keypoint_scores"] = [round(float(v), 4) for v in self.keypoint_scores[i]]
            if self.rotated is not None:
                cx, cy, w, h, angle = (float(v) for v in self.rotated[i])
                item["rotated_box"] = [round(cx, 2), round(cy, 2), round(w, 2), round(h, 2), round(angle, 5)]
                corners = rotated_corners(self.rotated[i : i + 1])[0]
                item["polygon"] = [[round(float(x), 2), round(float(y), 2)] for x, y in corners]
            if self.masks is not None:
                item["mask"] = mask_rle(self.masks[i])
            out.append(item)
        return out


def rotated_corners(rotated: np.ndarray) -> np.ndarray:
    """``[N, 4, 2]`` corners of ``[N, 5]`` (cx, cy, w, h, angle) boxes, in Ultralytics' ``xyxyxyxy`` order."""
    r = np.asarray(rotated, dtype=np.float32).reshape(-1, 5)
    ctr = r[:, :2]
    cos, sin = np.cos(r[:, 4]), np.sin(r[:, 4])
    v1 = np.stack([r[:, 2] / 2 * cos, r[:, 2] / 2 * sin], -1)
    v2 = np.stack([-r[:, 3] / 2 * sin, r[:, 3] / 2 * cos], -1)
    return np.stack([ctr + v1 + v2, ctr + v1 - v2, ctr - v1 - v2, ctr - v1 + v2], 1)


def mask_rle(mask: np.ndarray) -> dict[str, Any]:
    """A mask as uncompressed COCO run-length encoding: ``{"size": [h, w], "counts": [...]}``.

    Runs go down the columns (column-major, as pycocotools reads them) and start with a run of zeros
    (``0`` when the first pixel is set): ``pycocotools.mask.frPyObjects(rle, h, w)`` decodes it.
    """
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


@dataclass(frozen=True)
class Classifications:
    """Top-k classes of one image, best first."""

    class_ids: np.ndarray  # [K] int64
    scores: np.ndarray  # [K] float32 probabilities
    labels: Sequence[str] = ()

    def __len__(self) -> int:
        return len(self.class_ids)

    def label(self, class_id: int) -> str:
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else str(class_id)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {"class_id": int(c), "label": self.label(int(c)), "score": round(float(s), 5)}
            for c, s in zip(self.class_ids, self.scores)
        ]


@dataclass(frozen=True)
class RawOutputs:
    """Every output of the model by name (``--task raw``)."""

    outputs: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.outputs)

    def to_json(self) -> dict[str, Any]:
        return {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in self.outputs.items()}


Result = Detections | Classifications | RawOutputs


def result_json(result: Result) -> dict[str, Any]:
    """The task-specific part of a result as JSON: ``detections``, ``classes`` or ``outputs``."""
    if isinstance(result, Detections):
        return {"detections": result.to_json()}
    if isinstance(result, Classifications):
        return {"classes": result.to_json()}
    return {"outputs": result.to_json()}
