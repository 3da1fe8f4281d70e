"""The capture thread shared by every source: buffering policy, pacing, reconnects, counters.

A :class:`Reader` is one open device handle (a file, a camera, a GStreamer process): ``open``,
``read`` (an image, or ``None`` at end of stream / disconnect) and ``close``. A :class:`Source` runs
readers on its own thread and hands frames to the pipeline:

- **live** sources (cameras, RTSP) keep only the newest frame in a one-slot mailbox: a frame not
  taken before the next arrives is dropped and counted, so latency stays bounded; at end of stream
  they reconnect with exponential backoff, each attempt an event;
- **file** sources deliver every frame, in order, through a small bounded buffer (the capture
  thread waits for the consumer), and finish at end of file.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge.errors import SourceError

log = logging.getLogger("edge.sources")

EventFn = Callable[[str, str, dict[str, Any]], None]


@dataclass
class Frame:
    """One captured image and where and when it came from."""

    frame_id: int
    source: str
    capture_time: float  # time.time() at capture
    image: np.ndarray  # HxWx3 uint8 BGR


class Reader(Protocol):
    description: str  # how frames are read, for the log (e.g. "gst-launch-1.0 subprocess")

    def open(self) -> None:
        """Open the device; SourceError with the reason when it cannot."""

    def read(self) -> np.ndarray | None:
        """The next BGR frame, or None at end of stream / disconnect."""

    def close(self) -> None: ...


class Source:
    """Runs a :class:`Reader` on a capture thread; see the module doc for the live/file policies."""

    def __init__(
        self,
        uri: str,
        make_reader: Callable[[], Reader],
        *,
        live: bool,
        reconnect: bool | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        loop: bool = False,
        reconnect_min: float = 0.5,
        reconnect_max: float = 10.0,
        buffer: int = 4,
    ) -> None:
        self.uri = uri
        self.live = live
        self.reconnect = live if reconnect is None else reconnect
        self.fps = fps
        self.max_frames = max_frames
        self.loop = loop
        self.reconnect_min = max(0.01, reconnect_min)
        self.reconnect_max = max(self.reconnect_min, reconnect_max)
        self._make_reader = make_reader
        self._reader: Reader | None = None
        self._capacity = 1 if live else max(1, buffer)
        self._buffer: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_event: EventFn = lambda kind, message, data: None
        self._notify: Callable[[], None] = lambda: None
        self.error: BaseException | None = None
        self.finished = False  # end of stream reached (file) or stopped
        self.captured = 0
        self.dropped = 0
        self.reconnects = 0
        self.state = "created"
        self.description = ""

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self, on_event: EventFn | None = None, notify: Callable[[], None] | None = None) -> Source:
        """Open the device (SourceError "could not open ..." when it cannot) and start capturing."""
        if on_event is not None:
            self._on_event = on_event
        if notify is not None:
            self._notify = notify
        self._reader = self._open_reader()
        self.description = self._reader.description
        log.info("source %s: reading with %s (%s)", self.uri, self.description, "live" if self.live else "every frame")
        self.state = "running"
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.uri[:40]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop capturing and close the device (frames already buffered stay readable)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        interrupt = getattr(self._reader, "interrupt", None)
        if interrupt is not None:
            interrupt()  # unblocks a read in progress (the capture thread closes the reader)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> Source:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- consumer side ---------------------------------------------------------------------------
    def get(self) -> Frame | None:
        """The next frame if one is ready (never blocks); None otherwise."""
        with self._cond:
            if not self._buffer:
                return None
            frame = self._buffer.popleft()
            self._cond.notify_all()
            return frame

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, waiting up to ``timeout``; None when none came or the source finished."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._buffer:
                if self.done:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining if remaining is not None else 0.5)
            frame = self._buffer.popleft()
            self._cond.notify_all()
            return frame

    @property
    def done(self) -> bool:
        """Finished (or failed) and nothing left to read."""
        return (self.finished or self.error is not None) and not self._buffer

    # ---- capture thread --------------------------------------------------------------------------
    def _open_reader(self) -> Reader:
        reader: Reader | None = None
        try:
            reader = self._make_reader()
            reader.open()
        except SourceError as exc:
            if reader is not None:
                reader.close()
            raise SourceError(f"could not open {self.uri}: {exc}") from None
        return reader

    def _put(self, frame: Frame) -> None:
        with self._cond:
            if self.live:
                if self._buffer:
                    self._buffer.clear()
                    self.dropped += 1
            else:
                while len(self._buffer) >= self._capacity and not self._stop.is_set():
                    self._cond.wait(0.5)
            self._buffer.append(frame)
            self._cond.notify_all()
        self._notify()

    def _run(self) -> None:
        period = 1.0 / self.fps if self.fps else 0.0
        next_time = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.captured >= self.max_frames:
                    break
                reader = self._reader
                image = reader.read() if reader is not None else None
                if self._stop.is_set():
                    break
                if image is None:
                    if not self._end_of_stream():
                        break
                    continue
                if period:
                    next_time += period
                    delay = next_time - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    else:
                        next_time = time.monotonic()
                self._put(Frame(self.captured, self.uri, time.time(), image))
                self.captured += 1
        except BaseException as exc:  # surfaces in the pipeline's main thread
            self.error = exc
            self.state = "failed"
        finally:
            self.finished = True
            if self.state != "failed":
                self.state = "stopped" if self._stop.is_set() else "finished"
            if self._reader is not None:
                self._reader.close()
            with self._cond:
                self._cond.notify_all()
            self._notify()

    def _end_of_stream(self) -> bool:
        """Called at EOF/disconnect; True when capture continues with a new reader."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.loop and not self.live:
            self._reader = self._open_reader()
            return True
        if not self.reconnect:
            return False
        delay = self.reconnect_min
        attempt = 0
        self.state = "reconnecting"
        self._on_event("disconnect", f"{self.uri}: stream ended or disconnected", {"source": self.uri})
        while not self._stop.is_set():
            attempt += 1
            self.reconnects += 1
            self._on_event(
                "reconnect",
                f"{self.uri}: reconnecting (attempt {attempt}) in {delay:.1f} s",
                {"source": self.uri, "attempt": attempt, "delay_s": delay},
            )
            if self._stop.wait(delay):
                return False
            try:
                self._reader = self._open_reader()
            except SourceError as exc:
                log.warning("%s", exc)
                if "nvargus-daemon" in str(exc):
                    self._on_event("argus", str(exc), {"source": self.uri})
                delay = min(delay * 2, self.reconnect_max)
                continue
            self.state = "running"
            self._on_event(
                "reconnected",
                f"{self.uri}: reconnected after {attempt} attempt(s)",
                {"source": self.uri, "attempt": attempt},
            )
            return True
        return False
