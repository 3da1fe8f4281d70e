"""A progress line every few seconds while a pipeline runs, so long runs are never silent.

pipeline.observers.append(Progress(print, every=2.0, total=90))
#   45/90 frames  15.0 fps  dropped 0
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edge.observer import FrameResult, PipelineControl, PipelineStats


class Progress:
    """A :class:`~edge.observer.PipelineObserver` that calls ``emit(line)`` at most every ``every`` seconds."""

    def __init__(
        self,
        emit: Callable[[str], None],
        every: float = 10.0,
        total: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit = emit
        self.every = every
        self.total = total
        self._clock = clock
        self._next = 0.0

    @staticmethod
    def line(stats: PipelineStats, total: int | None = None) -> str:
        frames = f"{stats.frames}/{total}" if total else str(stats.frames)
        parts = [f"{frames} frames", f"{stats.fps:.1f} fps", f"dropped {stats.dropped}"]
        if stats.reconnects:
            parts.append(f"reconnects {stats.reconnects}")
        return "  ".join(parts)

    def on_start(self, stats: PipelineStats, control: PipelineControl) -> None:
        self._next = self._clock() + self.every

    def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
        now = self._clock()
        if now >= self._next:
            self._next = now + self.every
            self.emit(self.line(stats, self.total))

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        pass

    def on_stop(self, stats: PipelineStats) -> None:
        pass
