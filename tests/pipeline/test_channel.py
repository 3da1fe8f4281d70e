"""The channel between two stages: FIFO, bounded, and never blocking a stage once the pipeline aborts."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest

from edge.pipeline.channel import END, Channel, StageFailed


def _channel(maxsize: int) -> tuple[Channel, threading.Event, threading.Event]:
    abort, stopping = threading.Event(), threading.Event()
    return Channel(maxsize, abort, stopping), abort, stopping


def test_items_come_out_in_order_then_the_end_marker() -> None:
    ch, _, _ = _channel(4)
    for item in (1, 2, 3, END):
        ch.put(item)
    assert [ch.get() for _ in range(4)] == [1, 2, 3, END]
    with pytest.raises(queue.Empty):
        ch.get_nowait()


@pytest.mark.parametrize("call", ["put", "get"], ids=["put-on-full", "get-on-empty"])
def test_a_blocked_stage_is_released_when_the_pipeline_aborts(call: str) -> None:
    ch, abort, _ = _channel(1)
    if call == "put":
        ch.put("fills the channel")
    op: Callable[[], Any] = (lambda: ch.put("one too many")) if call == "put" else ch.get
    raised: list[BaseException] = []
    entered = threading.Event()

    def stage() -> None:
        entered.set()
        try:
            op()
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=stage, daemon=True)
    t.start()
    assert entered.wait(5)
    abort.set()
    t.join(timeout=5)
    assert not t.is_alive(), f"{call} stayed blocked after abort"
    assert len(raised) == 1 and isinstance(raised[0], StageFailed)


def test_wait_for_room_waits_for_the_consumer_and_gives_up_when_stopping() -> None:
    ch, _, stopping = _channel(1)
    assert ch.wait_for_room() is True  # empty: room at once
    ch.put("a")
    results: list[bool] = []
    t = threading.Thread(target=lambda: results.append(ch.wait_for_room()), daemon=True)
    t.start()
    assert ch.get() == "a"  # the consumer makes room
    t.join(timeout=5)
    assert results == [True]

    ch.put("b")
    t = threading.Thread(target=lambda: results.append(ch.wait_for_room()), daemon=True)
    t.start()
    stopping.set()
    t.join(timeout=5)
    assert not t.is_alive() and results == [True, False]
