"""SIGINT / SIGTERM for a running pipeline: the first drains and stops, a second stops at once."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("edge.pipeline")


def on_stop_signals(stop: Callable[[str], None], abort: Callable[[], None]) -> Callable[[], None]:
    """Route SIGINT and SIGTERM to ``stop(signal name)``, then ``abort()``; returns the function that restores
    the previous handlers. Call from the main thread only (Python delivers signals there)."""
    stopping = False
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        name = signal.Signals(signum).name
        if stopping:
            log.warning("%s again: stopping without draining", name)
            abort()
            return
        stopping = True
        stop(name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
