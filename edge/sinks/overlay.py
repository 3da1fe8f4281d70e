"""Annotated frames for the video, MJPEG and display sinks: the result drawn by :mod:`edge.draw` (boxes,
labels, keypoints, top classes), track ids, analytics lines and zones with their counts, plus an fps /
latency / frame-id line in the top-left corner."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edge.observer import FrameResult
from edge.results import Detections, Result

LINE_COLOR = (0, 215, 255)  # BGR amber
ZONE_COLOR = (255, 160, 0)  # BGR azure


def draw_result(image: np.ndarray, result: Result) -> np.ndarray:
    """A copy of ``image`` with ``result`` drawn (boxes, labels, keypoints or top classes)."""
    from edge.draw import draw

    return draw(image, result)


def _tag(image: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    scale = max(0.45, image.shape[0] / 1000)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = min(max(0, x), max(0, image.shape[1] - tw - 4))
    y = min(max(th + base + 2, y), image.shape[0] - 1)
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 4, y), color, -1)
    cv2.putText(image, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def draw_track_ids(image: np.ndarray, dets: Detections) -> np.ndarray:
    """``#id`` at the bottom-left corner of every tracked box (in place)."""
    if dets.track_ids is None:
        return image
    for box, tid in zip(dets.boxes, dets.track_ids):
        if tid >= 0:
            _tag(image, f"#{int(tid)}", round(float(box[0])), round(float(box[3])), (255, 255, 255))
    return image


def draw_analytics(image: np.ndarray, view: Any) -> np.ndarray:
    """Lines (with an arrow showing the "in" side), zones, and their counts (in place)."""
    thick = max(1, round(max(image.shape[:2]) / 400))
    counts = view.counts
    for zone in view.config.zones:
        pts = np.round(np.asarray(zone.polygon)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [pts], True, ZONE_COLOR, thick, cv2.LINE_AA)
        c = counts["zones"][zone.name]
        x, y = (int(v) for v in pts.reshape(-1, 2).min(axis=0))
        _tag(image, f"{zone.name}: {c['occupancy']} now, {c['entered']} in", x + 2, y + 24, ZONE_COLOR)
    for line in view.config.lines:
        (x1, y1), (x2, y2) = line.points
        cv2.line(image, (round(x1), round(y1)), (round(x2), round(y2)), LINE_COLOR, thick + 1, cv2.LINE_AA)
        # an arrow from the middle towards the right side of the line: the direction counted as "in"
        mx, my, dx, dy = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        norm = max(1e-9, float(np.hypot(dx, dy)))
        nx, ny = -dy / norm, dx / norm
        tip = (round(mx + 30 * nx), round(my + 30 * ny))
        cv2.arrowedLine(image, (round(mx - 30 * nx), round(my - 30 * ny)), tip, LINE_COLOR, thick, cv2.LINE_AA)
        c = counts["lines"][line.name]
        _tag(image, f"{line.name}: in {c['in']}  out {c['out']}", round(mx) + 6, round(my) - 8, LINE_COLOR)
    return image


def draw_status(image: np.ndarray, text: str) -> np.ndarray:
    """A dark strip with ``text`` at the top-left corner (in place)."""
    scale = max(0.5, image.shape[0] / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(image, (0, 0), (tw + 12, th + base + 10), (0, 0, 0), -1)
    cv2.putText(image, text, (6, th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def annotate(frame: FrameResult, fps: float | None) -> np.ndarray:
    """A copy of the frame with its result, track ids, analytics and an fps / latency line."""
    if frame.image is None:
        raise ValueError("annotate: the frame carries no image")
    canvas = draw_result(frame.image, frame.result)
    if isinstance(frame.result, Detections):
        draw_track_ids(canvas, frame.result)
    if frame.analytics is not None:
        draw_analytics(canvas, frame.analytics)
    latency = (frame.result_time - frame.capture_time) * 1000.0
    parts = [f"{fps:.1f} fps" if fps else "-- fps", f"{latency:.0f} ms", f"#{frame.frame_id}"]
    return draw_status(canvas, "  ".join(parts))
