"""What the pipeline tells the rest of the runtime while it runs.

Power policies (:mod:`edge.power`), sd_notify and the HTTP API (:mod:`edge.service`) and metrics
subscribe to a running pipeline through this one protocol; the pipeline calls every registered
observer from its own threads, so observers must be quick and thread-safe, and must not raise for
anything but a fatal condition (an exception stops the pipeline with the observer named).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge.results import Result


@dataclass
class FrameResult:
    """One processed frame: identity, timing and the typed result."""

    frame_id: int
    source: str
    capture_time: float  # time.time() when the frame was captured
    result_time: float  # time.time() when the result was ready
    result: Result
    image: np.ndarray | None = None  # the frame (BGR), for sinks that draw
    timings_ms: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    events: list[dict[str, Any]] | None = None  # analytics events of this frame (None: no analytics configured)
    analytics: Any = None  # edge.events.stage.AnalyticsView: the lines, zones and counts to draw


@dataclass
class PipelineStats:
    """A snapshot of a running pipeline, for status lines, /metrics and /v1/status."""

    frames: int = 0
    fps: float = 0.0
    dropped: int = 0
    reconnects: int = 0
    source_state: dict[str, str] = field(default_factory=dict)  # source URI -> "running"/"reconnecting"/...
    stage_ms: dict[str, float] = field(default_factory=dict)  # stage -> mean milliseconds
    extra: dict[str, Any] = field(default_factory=dict)


class PipelineControl(Protocol):
    """What an observer may change in a running pipeline (e.g. a power policy capping fps when idle)."""

    def set_fps_cap(self, fps: float | None) -> None:
        """Cap the processed frame rate (``None`` restores the configured cap)."""

    def stats(self) -> PipelineStats:
        """A snapshot of the pipeline's counters."""


class PipelineObserver(Protocol):
    def on_start(self, stats: PipelineStats, control: PipelineControl) -> None:
        """The model is loaded and warmed up; frames are about to flow."""

    def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
        """A frame's result is ready (called from the pipeline's result thread)."""

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        """Something happened: ``reconnect``, ``power``, ``thermal``, ``dropped``..."""

    def on_stop(self, stats: PipelineStats) -> None:
        """The pipeline is draining and about to stop."""
