"""Counters of a running pipeline: per-stage mean times, capture-to-result latency percentiles, fps."""

from __future__ import annotations

import collections
import threading
import time

import numpy as np


class StageTimes:
    """Thread-safe running means per stage (milliseconds) and a window of recent latencies."""

    def __init__(self, latency_window: int = 20000) -> None:
        self._lock = threading.Lock()
        self._sum: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self._latency: collections.deque[float] = collections.deque(maxlen=latency_window)
        self.frames = 0
        self.first_time: float | None = None
        self.last_time: float | None = None

    def add(self, stage: str, ms: float, count: int = 1) -> None:
        with self._lock:
            self._sum[stage] = self._sum.get(stage, 0.0) + ms
            self._count[stage] = self._count.get(stage, 0) + count

    def frame_done(self, latency_ms: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames += 1
            self._latency.append(latency_ms)
            if self.first_time is None:
                self.first_time = now
            self.last_time = now

    def means(self) -> dict[str, float]:
        with self._lock:
            return {k: round(self._sum[k] / max(1, self._count[k]), 3) for k in self._sum}

    def latency_percentiles(self) -> dict[str, float]:
        with self._lock:
            values = np.asarray(self._latency, dtype=np.float64)
        if values.size == 0:
            return {}
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return {
            "latency_p50_ms": round(float(p50), 2),
            "latency_p90_ms": round(float(p90), 2),
            "latency_p99_ms": round(float(p99), 2),
        }

    def fps(self, since: float | None) -> float:
        """Processed frames per second since ``since`` (monotonic), or between the first and last frame."""
        with self._lock:
            frames, last = self.frames, self.last_time
        if since is not None:
            return frames / max(1e-6, time.monotonic() - since)
        first = self.first_time
        if first is None or last is None or frames < 2 or last <= first:
            return 0.0
        return (frames - 1) / (last - first)
