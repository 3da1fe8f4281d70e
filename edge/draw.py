"""Draw results on images: ``edge infer --save`` and video overlays.

Boxes with labels, instance masks (segment, blended in the class colour), rotated boxes (obb, as polygons),
keypoints (pose: with the COCO skeleton when there are 17, only those whose score is above 0.5), top classes.

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
# COCO person keypoints (0 nose, 1-4 eyes/ears, 5-10 shoulders/elbows/wrists, 11-16 hips/knees/ankles): limbs
SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
KEYPOINT_MIN_SCORE = 0.5  # pose keypoints at or below this visibility are not drawn
MASK_ALPHA = 0.45


def color(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


def _scale(image: np.ndarray) -> tuple[int, float]:
    side = max(image.shape[0], image.shape[1])
    return max(1, round(side / 400)), max(0.4, side / 1200)


def draw_masks(image: np.ndarray, dets: Detections) -> np.ndarray:
    """Each instance mask blended into the image in its class colour, drawn in place (best box on top)."""
    if dets.masks is None or dets.masks.shape[1:] != image.shape[:2]:
        return image
    for i in reversed(range(len(dets))):
        m = dets.masks[i]
        ys, xs = np.nonzero(m)
        if not len(ys):
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1  # blend only the mask's bounding box
        roi = image[y0:y1, x0:x1]
        sel = m[y0:y1, x0:x1]
        tint = np.array(color(int(dets.class_ids[i])), np.float32)
        roi[sel] = (roi[sel] * (1 - MASK_ALPHA) + tint * MASK_ALPHA).astype(np.uint8)
    return image


def _draw_keypoints(image: np.ndarray, points: np.ndarray, scores: np.ndarray | None, thick: int) -> None:
    visible = np.ones(len(points), bool) if scores is None else scores > KEYPOINT_MIN_SCORE
    pts = [(round(float(x)), round(float(y))) for x, y in points]
    if len(points) == 17 and scores is not None:
        for a, b in SKELETON:
            if visible[a] and visible[b]:
                cv2.line(image, pts[a], pts[b], (255, 200, 80), thick, cv2.LINE_AA)
    for k, p in enumerate(pts):
        if visible[k]:
            cv2.circle(image, p, thick + 1, KEYPOINT_COLORS[k % len(KEYPOINT_COLORS)], -1, cv2.LINE_AA)


def draw_detections(image: np.ndarray, dets: Detections) -> np.ndarray:
    """Masks, boxes (rotated boxes as polygons) with ``label score`` tags and keypoints, drawn in place (BGR)."""
    thick, font = _scale(image)
    draw_masks(image, dets)
    polygons = dets.polygons().round().astype(np.int32) if dets.rotated is not None else None
    for i in range(len(dets)):
        x1, y1, x2, y2 = (round(float(v)) for v in dets.boxes[i])
        cid = int(dets.class_ids[i])
        c = color(cid)
        if polygons is not None:
            cv2.polylines(image, [polygons[i]], True, c, thick, cv2.LINE_AA)
            x1, y1 = (int(v) for v in polygons[i][np.argmin(polygons[i][:, 1])])  # the tag at the top corner
        else:
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
            scores = dets.keypoint_scores[i] if dets.keypoint_scores is not None else None
            _draw_keypoints(image, dets.keypoints[i], scores, thick)
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
