"""What every sink implements, and the fps meter the drawing sinks share."""

from __future__ import annotations

import time
from typing import Protocol

from edge.observer import FrameResult


class Sink(Protocol):
    uri: str
    needs_image: bool  # True when the sink draws the frame (the pipeline then keeps images)

    def open(self) -> None:
        """Create files, bind ports, open windows; SourceError naming the URI when it cannot."""

    def write(self, frame: FrameResult) -> None:
        """Write one processed frame (called from the pipeline's sink thread, in order)."""

    def close(self) -> None:
        """Flush and release everything (idempotent)."""

    def describe(self) -> str:
        """Where the output goes, for the log and the summary."""


class FpsMeter:
    """Frames per second over a sliding window of recent result times."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._times: list[float] = []

    def tick(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.pop(0)
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(1e-6, self._times[-1] - self._times[0])
