"""``display://``: an OpenCV window, where there is a display and an OpenCV with a GUI."""

from __future__ import annotations

import os

import cv2

from edge.errors import SourceError
from edge.observer import FrameResult
from edge.sinks.base import FpsMeter
from edge.sinks.overlay import annotate


def opencv_has_gui() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() not in ("NONE", "NO", "")
    return False


def display_problem(env: dict[str, str] | None = None) -> str | None:
    """Why no window can open here, or None when one can."""
    env = dict(os.environ) if env is None else env
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return "no display here ($DISPLAY and $WAYLAND_DISPLAY are not set); use mjpeg://0.0.0.0:8080 and a browser"
    if not opencv_has_gui():
        return (
            "this OpenCV has no GUI (opencv-python-headless); install JetPack's python3-opencv or "
            "opencv-python, or use mjpeg://0.0.0.0:8080 and a browser"
        )
    return None


class DisplaySink:
    needs_image = True

    def __init__(self, uri: str, title: str = "edge") -> None:
        self.uri = uri
        self.title = title or "edge"
        self._open = False
        self._meter = FpsMeter()

    def open(self) -> None:
        problem = display_problem()
        if problem:
            raise SourceError(f"could not open sink {self.uri}: {problem}")
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise SourceError(f"could not open sink {self.uri}: {exc}") from None
        self._open = True

    def write(self, frame: FrameResult) -> None:
        if not self._open or frame.image is None:
            return
        cv2.imshow(self.title, annotate(frame, self._meter.tick(frame.result_time)))
        cv2.waitKey(1)

    def close(self) -> None:
        if self._open:
            self._open = False
            cv2.destroyWindow(self.title)

    def describe(self) -> str:
        return f"window {self.title!r}"
