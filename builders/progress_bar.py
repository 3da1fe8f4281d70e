"""A progress bar on stderr with elapsed time, for calibration, accuracy checks and engine builds.

    with ProgressBar(total=len(images), label="calibrate") as bar:
        for image in images:
            ...
            bar.advance()

On a terminal the bar redraws in place (``calibrate [#####.....] 12/24  0:07  phase``) and its clock
keeps ticking while a long step runs. Elsewhere (CI logs, pipes) it prints one line per phase change
(to a non-empty phase) and a heartbeat line every ``interval`` seconds, so a log is never silent for long, and a closing line
with the total time. ``total=None`` shows a count without a bar (unknown amount of work).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

BAR_WIDTH = 24


def format_elapsed(seconds: float) -> str:
    """``0:07``, ``12:34`` or ``1:02:03``."""
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """Progress of one task; a context manager (the closing line says done, failed or interrupted)."""

    def __init__(
        self,
        total: int | None,
        label: str,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total if total is None else max(0, int(total))
        self.label = label
        self.done = 0
        self.phase = ""
        self._stream = stream if stream is not None else sys.stderr
        self._tty = bool(tty) if tty is not None else _isatty(self._stream)
        self._interval = interval
        self._clock = clock
        self._start = clock()
        self._last_emit = self._start
        self._last_line_len = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public API ---------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            self._emit(force=False)

    def set_phase(self, text: str) -> None:
        with self._lock:
            changed = text != self.phase
            self.phase = text
            self._emit(force=changed and bool(text) and not self._tty)

    def set_total(self, total: int | None, done: int | None = None) -> None:
        """Change the amount of work (e.g. when a build reports its step count)."""
        with self._lock:
            self.total = total if total is None else max(0, int(total))
            if done is not None:
                self.done = done
            self._emit(force=False)

    def tick(self) -> None:
        """Redraw the clock on a terminal, or print a heartbeat line when ``interval`` has passed."""
        with self._lock:
            self._emit(force=False)

    def __enter__(self) -> ProgressBar:
        self._start = self._last_emit = self._clock()
        if not self._tty:
            self._write_line(f"{self.label}: started" + (f" ({self.total} steps)" if self.total else ""))
        self._thread = threading.Thread(target=self._heartbeat, name=f"progress-{self.label}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is None:
            outcome = "done"
        elif issubclass(exc_type, KeyboardInterrupt):
            outcome = "interrupted"
        else:
            outcome = "failed"
        with self._lock:
            if self._tty:
                self._draw()
                self._stream.write("\n")
                self._last_line_len = 0
            self._write_line(f"{self.label}: {outcome} in {format_elapsed(self.elapsed)}" + self._count_text())

    # -- rendering ----------------------------------------------------------------------------------
    def render(self) -> str:
        """The current status line (no newline)."""
        parts = [self.label]
        if self.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * self.done // self.total)
            parts.append("[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
            parts.append(f"{min(self.done, self.total)}/{self.total}")
        elif self.done:
            parts.append(str(self.done))
        parts.append(format_elapsed(self.elapsed))
        if self.phase:
            parts.append(self.phase)
        return "  ".join(parts)

    def _count_text(self) -> str:
        if self.total:
            return f" ({min(self.done, self.total)}/{self.total})"
        return f" ({self.done})" if self.done else ""

    def _emit(self, force: bool) -> None:
        now = self._clock()
        if self._tty:
            if force or now - self._last_emit >= 0.1 or (self.total and self.done >= self.total):
                self._draw()
                self._last_emit = now
        elif force or now - self._last_emit >= self._interval:
            self._write_line(self.render())
            self._last_emit = now

    def _draw(self) -> None:
        line = self.render()
        pad = " " * max(0, self._last_line_len - len(line))
        self._stream.write("\r" + line + pad)
        self._stream.flush()
        self._last_line_len = len(line)

    def _write_line(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def _heartbeat(self) -> None:
        period = 1.0 if self._tty else max(0.01, min(self._interval, 1.0))
        while not self._stop.wait(period):
            self.tick()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
