"""Readers for video files, image files, directories of images and synthetic ``test://`` frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.errors import SourceError
from edge.preprocess import load_image, to_bgr
from edge.sources.uri import IMAGE_SUFFIXES


def resize_to(image: np.ndarray, width: int | None, height: int | None) -> np.ndarray:
    """Resize to width x height when asked (one of them alone keeps the aspect ratio)."""
    if not width and not height:
        return image
    h, w = image.shape[:2]
    tw = width or round(w * (height or h) / h)
    th = height or round(h * (width or w) / w)
    if (th, tw) == (h, w):
        return image
    return cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA if tw < w else cv2.INTER_LINEAR)


class VideoFileReader:
    """A video file decoded by OpenCV (FFmpeg in pip's wheels)."""

    description = "OpenCV VideoCapture (file)"

    def __init__(self, path: str, width: int | None = None, height: int | None = None) -> None:
        self.path = path
        self.size = (width, height)
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        if not Path(self.path).is_file():
            raise SourceError(f"file {self.path} not found")
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"OpenCV cannot decode {self.path} (not a video file, or a codec it lacks)")
        self._cap = cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        return resize_to(to_bgr(image, self.path), *self.size)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImagesReader:
    """One image file, or every image of a directory in name order."""

    def __init__(self, path: str, width: int | None = None, height: int | None = None) -> None:
        self.path = Path(path)
        self.size = (width, height)
        self.description = "image directory" if self.path.is_dir() else "image file"
        self._files: list[Path] = []
        self._next = 0

    def open(self) -> None:
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise SourceError(f"directory {self.path} has no images ({', '.join(IMAGE_SUFFIXES)})")
        elif self.path.is_file():
            self._files = [self.path]
        else:
            raise SourceError(f"{self.path} not found")
        self._next = 0

    def read(self) -> np.ndarray | None:
        if self._next >= len(self._files):
            return None
        path = self._files[self._next]
        self._next += 1
        return resize_to(load_image(path), *self.size)

    def close(self) -> None:
        self._next = len(self._files)


class SyntheticReader:
    """``test://``: colour bars and a gradient scrolling sideways, with the frame number drawn in."""

    description = "synthetic frames"

    def __init__(self, width: int = 640, height: int = 480, pattern: str = "bars") -> None:
        if pattern not in ("bars", "noise"):
            raise SourceError(f"test:// pattern {pattern!r} is not one of bars, noise")
        self.width, self.height, self.pattern = width, height, pattern
        self._base: np.ndarray | None = None
        self._n = 0

    def open(self) -> None:
        w, h = self.width, self.height
        if w <= 0 or h <= 0:
            raise SourceError(f"test:// needs a positive width and height, got {w}x{h}")
        if self.pattern == "noise":
            rng = np.random.default_rng(0)
            self._base = rng.integers(0, 256, (h, 2 * w, 3), dtype=np.uint8)
        else:
            colors = np.array(
                [
                    [255, 255, 255],
                    [0, 255, 255],
                    [255, 255, 0],
                    [0, 255, 0],
                    [255, 0, 255],
                    [0, 0, 255],
                    [255, 0, 0],
                    [0, 0, 0],
                ],
                np.uint8,
            )
            xs = np.arange(2 * w)
            row = colors[(xs * 8 // w) % 8]
            base = np.repeat(row[None], h, axis=0)
            ramp = (np.arange(h, dtype=np.float32) / max(1, h - 1) * 0.6 + 0.4)[:, None, None]
            self._base = (base * ramp).astype(np.uint8)
        self._n = 0

    def read(self) -> np.ndarray | None:
        if self._base is None:
            return None
        shift = (self._n * 4) % self.width
        image = self._base[:, shift : shift + self.width].copy()
        cv2.putText(image, str(self._n), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (32, 32, 32), 3, cv2.LINE_AA)
        self._n += 1
        return image

    def close(self) -> None:
        self._base = None
