"""Annotated frames for the video, MJPEG and display sinks: the result drawn by :mod:`edge.draw` (boxes,
labels, keypoints, top classes), plus an fps / latency / frame-id line in the top-left corner."""

from __future__ import annotations

import cv2
import numpy as np

from edge.observer import FrameResult
from edge.results import Result


def draw_result(image: np.ndarray, result: Result) -> np.ndarray:
    """A copy of ``image`` with ``result`` drawn (boxes, labels, keypoints or top classes)."""
    from edge.draw import draw

    return draw(image, result)


def draw_status(image: np.ndarray, text: str) -> np.ndarray:
    """A dark strip with ``text`` at the top-left corner (in place)."""
    scale = max(0.5, image.shape[0] / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (0, 0), (tw + 12, th + base + 10), (0, 0, 0), -1)
    cv2.putText(image, text, (6, th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def annotate(frame: FrameResult, fps: float | None) -> np.ndarray:
    """A copy of the frame with its result and an fps / latency line."""
    if frame.image is None:
        raise ValueError("annotate: the frame carries no image")
    canvas = draw_result(frame.image, frame.result)
    latency = (frame.result_time - frame.capture_time) * 1000.0
    parts = [f"{fps:.1f} fps" if fps else "-- fps", f"{latency:.0f} ms", f"#{frame.frame_id}"]
    return draw_status(canvas, "  ".join(parts))
