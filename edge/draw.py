"""Draw results on images (boxes, labels, keypoints, top classes): ``edge infer --save`` and video overlays.

    annotated = draw(image_bgr, result)        # a copy; draw(..., inplace=True) draws on the image itself

One function per result type; colours come from a fixed palette by class id so a class keeps its colour
from frame to frame. Only OpenCV and numpy.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.preprocess import to_bgr
from edge.results import Classifications, Detections, Result

PALETTE = (
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (211, 188, 0),
    (255, 128, 0),
    (255, 56, 132),
    (199, 55, 255),
)
KEYPOINT_COLORS = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))


def color(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


def _scale(image: np.ndarray) -> tuple[int, float]:
    side = max(image.shape[0], image.shape[1])
    return max(1, round(side / 400)), max(0.4, side / 1200)


def draw_detections(image: np.ndarray, dets: Detections) -> np.ndarray:
    """Boxes with ``label score`` tags and keypoints, drawn in place on a BGR image."""
    thick, font = _scale(image)
    for i in range(len(dets)):
        x1, y1, x2, y2 = (round(float(v)) for v in dets.boxes[i])
        cid = int(dets.class_ids[i])
        c = color(cid)
        cv2.rectangle(image, (x1, y1), (x2, y2), c, thick, cv2.LINE_AA)
        text = f"{dets.label(cid)} {float(dets.scores[i]):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, max(1, thick - 1))
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + base + 2
        cv2.rectangle(image, (x1, ty - th - base), (x1 + tw + 2, ty + base - 1), c, -1)
        cv2.putText(
            image,
            text,
            (x1 + 1, ty - 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            font,
            (255, 255, 255),
            max(1, thick - 1),
            cv2.LINE_AA,
        )
        if dets.keypoints is not None:
            for k, (px, py) in enumerate(dets.keypoints[i]):
                kc = KEYPOINT_COLORS[k % len(KEYPOINT_COLORS)]
                cv2.circle(image, (round(float(px)), round(float(py))), thick + 1, kc, -1, cv2.LINE_AA)
    return image


def draw_classes(image: np.ndarray, classes: Classifications) -> np.ndarray:
    """The top classes as text lines in the top-left corner, drawn in place."""
    thick, font = _scale(image)
    y = 0
    for cid, score in zip(classes.class_ids, classes.scores):
        text = f"{classes.label(int(cid))} {float(score):.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, max(1, thick - 1))
        cv2.rectangle(image, (0, y), (tw + 4, y + th + base + 4), (0, 0, 0), -1)
        cv2.putText(
            image,
            text,
            (2, y + th + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            font,
            color(int(cid)),
            max(1, thick - 1),
            cv2.LINE_AA,
        )
        y += th + base + 4
    return image


def draw(image: np.ndarray, result: Result, *, inplace: bool = False) -> np.ndarray:
    """``image`` (HxW, HxWx3 BGR or HxWx4 BGRA uint8) with ``result`` drawn on it, as BGR.

    ``inplace=True`` draws on ``image`` itself when it already is HxWx3 BGR (video overlays).
    """
    bgr = to_bgr(image)
    canvas = bgr if (inplace and bgr is image) else bgr.copy()
    if isinstance(result, Detections):
        return draw_detections(canvas, result)
    if isinstance(result, Classifications):
        return draw_classes(canvas, result)
    return canvas
