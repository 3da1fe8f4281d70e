"""One canonical, typed result per task, consumed by every sink, overlay and the HTTP API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.errors import ConfigError


@dataclass(frozen=True)
class Detections:
    """Boxes in original-image pixels (xyxy), with scores, class ids and optional keypoints.

    Filter with a boolean mask or index array: ``dets[dets.scores > 0.5]``.
    """

    boxes: np.ndarray  # [N, 4] float32 x1, y1, x2, y2
    scores: np.ndarray  # [N] float32
    class_ids: np.ndarray  # [N] int64
    labels: Sequence[str] = ()  # label names by class id (the bundle's labels)
    keypoints: np.ndarray | None = None  # [N, K, 2] float32, e.g. RetinaFace's 5 landmarks
    track_ids: np.ndarray | None = None  # [N] int64 from a tracker (edge.events); -1: not (yet) in a track

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

    @classmethod
    def empty(cls, labels: Sequence[str] = ()) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), labels)

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: Any) -> Detections:
        kp = self.keypoints[index] if self.keypoints is not None else None
        tids = self.track_ids[index] if self.track_ids is not None else None
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index], self.labels, kp, tids)

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
            out.append(item)
        return out


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
