"""Dynamic batching across concurrent requests, as Triton's dynamic batcher does, over N instances.

Requests join one queue per model version. Each instance (its own backend session, run on its own
thread) takes the oldest request and every queued request whose tensors can be stacked with it (same
dtypes and per-item shapes), up to ``max_batch`` items; with ``preferred_batch`` it takes the largest
preferred size on hand. When fewer are queued, the instance waits at most ``max_queue_delay_us``
(counted from the oldest request's arrival) for more; with a delay of 0 it runs what is queued now, so
batches form naturally while instances are busy. Outputs are split back along the batch axis.

The event loop owns the queue (no locks); only ``model.infer_raw`` runs on the instance threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge.errors import EdgeError, first_line
from edge.serve.status import RequestError

log = logging.getLogger(__name__)


class Runner(Protocol):
    def infer_raw(self, tensors: Any) -> dict[str, np.ndarray]: ...


@dataclass
class Item:
    feeds: dict[str, np.ndarray]
    n: int  # batch items in this request
    key: tuple[Any, ...]  # requests with equal keys can be stacked
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What one executed batch reports to the metrics (Triton's counters)."""

    items: int
    requests: int
    queue_us: list[float]
    compute_us: float


def stack_key(feeds: dict[str, np.ndarray]) -> tuple[Any, ...]:
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(feeds.items()))


class Batcher:
    def __init__(
        self,
        name: str,
        instances: Sequence[Runner],
        *,
        max_batch: int,
        batchable: bool,
        dynamic: bool = True,
        preferred: Sequence[int] = (),
        max_queue_delay_us: int = 0,
        max_queue: int = 1024,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.name = name
        self.instances = list(instances)
        self.max_batch = max_batch if batchable else 1
        self.batchable = batchable
        self.dynamic = batchable and dynamic
        self.preferred = sorted(p for p in preferred if p <= self.max_batch)
        self.delay_s = max_queue_delay_us / 1e6 if self.dynamic else 0.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: deque[Item] = deque()
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._running = 0
        self._accepting = True
        self._closing = False
        self._executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-instance{i}")
            for i in range(len(self.instances))
        ]
        self._tasks = [asyncio.ensure_future(self._worker(i)) for i in range(len(self.instances))]

    # ---- requests ------------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, feeds: dict[str, np.ndarray], n: int, timeout_s: float) -> dict[str, np.ndarray]:
        """Queue one request (``n`` items along axis 0 of every input) and wait for its outputs."""
        if not self._accepting:
            raise RequestError("unavailable", f"model {self.name} is being unloaded; retry")
        if len(self._queue) >= self.max_queue:
            raise RequestError(
                "busy", f"model {self.name}: {len(self._queue)} requests are queued (the limit); retry later"
            )
        if n > self.max_batch and self.batchable:
            raise RequestError("invalid", f"model {self.name}: batch size {n} is over its max_batch {self.max_batch}")
        fut: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        self._queue.append(Item(feeds, n, stack_key(feeds), fut))
        self._idle.clear()
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except asyncio.TimeoutError:
            fut.cancel()  # still queued: skipped when taken; running: its outputs are dropped
            raise RequestError(
                "timeout",
                f"model {self.name}: timed out before its answer was ready (the request timeout, --request-timeout)",
            ) from None

    # ---- instances -----------------------------------------------------------------------------------
    def _ready_items(self) -> int:
        """Items queued that could join a batch with the oldest request."""
        if not self._queue:
            return 0
        key = self._queue[0].key
        return sum(it.n for it in self._queue if it.key == key and not it.future.done())

    def _target(self) -> int:
        return self.preferred[-1] if self.preferred else self.max_batch

    def _take(self) -> list[Item]:
        while self._queue and self._queue[0].future.done():  # timed out while queued
            self._queue.popleft()
        if not self._queue:
            return []
        first = self._queue.popleft()
        batch = [first]
        if not self.dynamic:
            return batch
        ready = first.n + sum(it.n for it in self._queue if it.key == first.key and not it.future.done())
        limit = min(ready, self.max_batch)
        if self.preferred:
            fitting = [p for p in self.preferred if p <= limit]
            if fitting and time.perf_counter() - first.enqueued < self.delay_s:
                limit = fitting[-1]
        total = first.n
        keep: deque[Item] = deque()
        while self._queue:
            it = self._queue.popleft()
            if it.future.done():
                continue
            if it.key == first.key and total + it.n <= limit:
                batch.append(it)
                total += it.n
            else:
                keep.append(it)
        self._queue = keep
        return batch

    async def _worker(self, index: int) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            if self.delay_s > 0:
                deadline = self._queue[0].enqueued + self.delay_s
                while self._queue and self._ready_items() < self._target():
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._arrived.clear()
                    try:
                        await asyncio.wait_for(self._arrived.wait(), left)
                    except asyncio.TimeoutError:
                        break
            batch = self._take()
            if not batch:
                self._check_idle()
                continue
            self._running += 1
            try:
                await self._run(index, batch)
            except Exception as exc:  # a bug here must fail these requests, not stop the instance's loop
                log.exception("model %s: batch failed", self.name)
                err = RequestError("internal", f"model {self.name}: {first_line(exc, type(exc).__name__)}")
                for it in batch:
                    if not it.future.done():
                        it.future.set_exception(err)
            finally:
                self._running -= 1
                self._check_idle()

    def _check_idle(self) -> None:
        if not self._queue and self._running == 0:
            self._idle.set()

    async def _run(self, index: int, batch: list[Item]) -> None:
        start = time.perf_counter()
        total = sum(it.n for it in batch)
        instance = self.instances[index]
        parts = [it.feeds for it in batch]

        def execute() -> dict[str, np.ndarray]:  # on the instance's thread: the stacking copy leaves the loop free
            feeds = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            return instance.infer_raw(feeds)

        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executors[index], execute)
        except Exception as exc:  # one failed batch fails its requests, never the server
            log.warning("model %s: inference failed: %s", self.name, first_line(exc, type(exc).__name__))
            kind = "invalid" if isinstance(exc, EdgeError) else "internal"
            err = RequestError(kind, f"model {self.name}: inference failed: {first_line(exc, type(exc).__name__)}")
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(err)
            return
        end = time.perf_counter()
        if self.on_batch is not None:
            self.on_batch(
                BatchStats(total, len(batch), [(start - it.enqueued) * 1e6 for it in batch], (end - start) * 1e6)
            )
        offset = 0
        for it in batch:
            if not it.future.done():
                if len(batch) == 1:
                    it.future.set_result(outputs)
                else:
                    it.future.set_result(
                        {
                            k: (v[offset : offset + it.n] if v.ndim and v.shape[0] == total else v)
                            for k, v in outputs.items()
                        }
                    )
            offset += it.n

    # ---- lifecycle -----------------------------------------------------------------------------------
    async def drain(self) -> None:
        """Refuse new requests, finish every queued and running one, then stop the instance loops."""
        self._accepting = False
        await self._idle.wait()
        self._closing = True
        self._arrived.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ex in self._executors:
            ex.shutdown(wait=True)
