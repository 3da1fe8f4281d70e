"""Real media files for source tests, written with OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, frames: int, size: tuple[int, int] = (160, 120), fps: float = 30.0) -> Path:
    """A real video file written with OpenCV (MJPG in AVI): frame i is a flat grey of level 10 + 8 * i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 10 + 8 * i, np.uint8))
    writer.release()
    return path
