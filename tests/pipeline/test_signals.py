"""SIGINT/SIGTERM routing: the first signal drains, a second aborts; previous handlers come back."""

from __future__ import annotations

import os
import signal

import pytest

from edge.pipeline.signals import on_stop_signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_stops_second_aborts(sig: signal.Signals) -> None:
    calls: list[str] = []
    before = signal.getsignal(sig)
    restore = on_stop_signals(lambda reason: calls.append(f"stop {reason}"), lambda: calls.append("abort"))
    try:
        os.kill(os.getpid(), sig)  # handlers run in the main thread before the next bytecode
        assert calls == [f"stop {sig.name}"]
        os.kill(os.getpid(), sig)
        assert calls == [f"stop {sig.name}", "abort"]
    finally:
        restore()
    assert signal.getsignal(sig) is before
