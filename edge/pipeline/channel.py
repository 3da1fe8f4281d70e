"""The bounded queue between two pipeline stages, which never deadlocks when another stage failed.

Every blocking call wakes up at least every 0.1 s to look at the pipeline's ``abort`` event (a stage
failed, or a second signal): then it raises :class:`StageFailed`, which ends the calling stage's
thread quietly (the failure itself is already recorded). :data:`END` travels through the channels
behind the last item, so each stage knows when the one before it has finished.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

END = object()  # end of stream marker travelling through the channels
_POLL = 0.1  # seconds between looks at the abort / stopping events


class StageFailed(Exception):
    """Raised in a stage's thread when the pipeline aborts; the stage returns without recording it."""


class Channel:
    """A bounded FIFO of ``maxsize`` items between two stages (see the module doc)."""

    def __init__(self, maxsize: int, abort: threading.Event, stopping: threading.Event) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize)
        self._abort = abort
        self._stopping = stopping

    def put(self, item: Any) -> None:
        """Put ``item``, waiting for room; StageFailed when the pipeline aborts meanwhile."""
        while True:
            if self._abort.is_set():
                raise StageFailed
            try:
                self._q.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def get(self) -> Any:
        """The next item, waiting for one; StageFailed when the pipeline aborts meanwhile."""
        while True:
            if self._abort.is_set():
                raise StageFailed
            try:
                return self._q.get(timeout=_POLL)
            except queue.Empty:
                continue

    def get_nowait(self) -> Any:
        """The next item if one is waiting; :class:`queue.Empty` otherwise."""
        return self._q.get_nowait()

    def wait_for_room(self) -> bool:
        """Wait until the channel can take an item, so that a live frame is taken from its source only when
        the next stage can accept it (it waits in the mailbox, where newer frames replace it); False when
        the pipeline is stopping."""
        q = self._q
        with q.not_full:  # holds q.mutex: q.full() would deadlock, so look at the deque itself
            while 0 < q.maxsize <= len(q.queue):
                if self._stopping.is_set():
                    return False
                q.not_full.wait(_POLL)
        return not self._stopping.is_set()
