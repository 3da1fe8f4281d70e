"""sd_notify(3) from the running pipeline or ``edge serve``: READY, WATCHDOG, STATUS, STOPPING.

The protocol is one datagram per notification, ``KEY=VALUE`` lines, sent to the unix socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` names an abstract socket). Without ``NOTIFY_SOCKET`` every call is a
no-op, so ``edge run`` behaves the same in a terminal and under systemd.

The watchdog follows the pipeline, not the process: a thread wakes every ``WatchdogSec/2`` (from
``$WATCHDOG_USEC``) and sends ``WATCHDOG=1`` only if frames were processed (or a source reconnect was
attempted) since the previous wake-up. A pipeline that stalls, with every thread still alive, stops
pinging and systemd restarts it. systemd arms the watchdog when READY=1 arrives; until then
``TimeoutStartSec=`` covers model loading and warm-up.

``STOPPING=1`` goes out when the pipeline stops taking frames (its ``stopping`` event: SIGTERM, end of
stream, ``max_frames``...), before the frames in flight are drained; watchdog pings continue while they
drain. A pipeline that ends on an error sends it from ``on_stop``.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from collections.abc import Mapping
from typing import Any

from edge.observer import FrameResult, PipelineControl, PipelineStats

log = logging.getLogger(__name__)

# Events that show the pipeline is alive while no frames flow (a camera being reopened).
PROGRESS_EVENTS = frozenset({"reconnect", "reconnecting"})
# The pipeline's event when it stops taking frames and starts draining the ones in flight.
STOPPING_EVENT = "stopping"


class Notifier:
    """Sends sd_notify messages to one socket address; a no-op when the address is ``None``."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        # Reentrant: the pipeline's stop() (hence STOPPING=1) may run in a signal handler on the main thread,
        # which can interrupt that same thread inside send().
        self._lock = threading.RLock()
        self._target: str | bytes | None = None
        if address:
            if address.startswith("@"):
                self._target = b"\0" + address[1:].encode()
            elif address.startswith("/"):
                self._target = address
            else:
                log.warning("NOTIFY_SOCKET=%s is not a unix socket path; systemd notifications are off", address)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=value`` lines (``notify(READY=1, STATUS="warming up")``); False if nothing was sent."""
        message = "\n".join(f"{k}={_one_line(v)}" for k, v in fields.items())
        return self.send(message)

    def send(self, message: str) -> bool:
        if self._target is None:
            return False
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message.encode(), self._target)
                return True
            except OSError as exc:
                # systemd may be restarting, or the socket is gone: never fail the pipeline for it.
                log.warning("sd_notify to %s failed: %s", self.address, exc)
                return False

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or None when the watchdog is off."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process (we are a child of the service's main process)
    return int(usec) / 2e6


def status_line(stats: PipelineStats, state: str = "running") -> str:
    """``running: 29.8 fps, 1200 frames, 3 dropped, 0 reconnects; csi://0 running``."""
    line = (
        f"{state}: {stats.fps:.1f} fps, {stats.frames} frames, {stats.dropped} dropped, {stats.reconnects} reconnects"
    )
    if stats.source_state:
        line += "; " + ", ".join(f"{src} {st}" for src, st in sorted(stats.source_state.items()))
    return line


class NotifyObserver:
    """A pipeline observer that keeps systemd informed; harmless outside systemd."""

    def __init__(self, notifier: Notifier, interval: float | None, status_every: float = 5.0) -> None:
        self.notifier = notifier
        self.interval = interval
        self._period = interval if interval is not None else status_every
        self._progress = 0  # frames + reconnect attempts; written by pipeline threads, read by the ticker
        self._pinged_at = 0
        self._stats = PipelineStats()
        self._stalled = False
        self._stopping_sent = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NotifyObserver:
        return cls(Notifier.from_env(environ), watchdog_interval(environ))

    # -- PipelineObserver ------------------------------------------------------------------------
    def on_start(self, stats: PipelineStats, control: PipelineControl) -> None:
        self._stats = stats
        self.notifier.notify(READY=1, STATUS=status_line(stats, "ready"))
        if self.notifier.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edge-sd-notify", daemon=True)
            self._thread.start()

    def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
        self._progress += 1
        self._stats = stats

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        if kind in PROGRESS_EVENTS:
            self._progress += 1
        elif kind == STOPPING_EVENT and not self._stopping_sent:
            # Draining starts: tell systemd now (the watchdog keeps following the frames still in flight).
            self._stopping_sent = True
            self.notifier.notify(STOPPING=1, STATUS=f"stopping: {message}")

    def on_stop(self, stats: PipelineStats) -> None:
        self._stats = stats
        self._halt()
        if self._stopping_sent:
            self.notifier.notify(STATUS=status_line(stats, "stopped"))
        else:  # a pipeline that stopped on an error, without draining
            self._stopping_sent = True
            self.notifier.notify(STOPPING=1, STATUS=status_line(stats, "stopping"))

    def close(self) -> None:
        self._halt()
        self.notifier.close()

    # -- the ticker ------------------------------------------------------------------------------
    def _halt(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.tick()

    def tick(self) -> bool:
        """One wake-up: ping the watchdog if the pipeline progressed since the last ping; True if it pinged."""
        progress = self._progress
        advanced = progress != self._pinged_at
        if not advanced and self.interval is not None:
            if not self._stalled:
                log.warning(
                    "pipeline stalled: no frames for %.1f s; withholding the systemd watchdog ping", self._period
                )
            self._stalled = True
            self.notifier.notify(STATUS=status_line(self._stats, "stalled"))
            return False
        if self._stalled:
            log.info("pipeline progressing again")
            self._stalled = False
        self._pinged_at = progress
        status = status_line(self._stats, "draining" if self._stopping_sent else "running")
        if self.interval is not None:
            return self.notifier.notify(WATCHDOG=1, STATUS=status)
        self.notifier.notify(STATUS=status)
        return False


def _one_line(value: object) -> str:
    return str(value).replace("\n", " ")


class ServeNotifier:
    """sd_notify for ``edge serve``: the hooks of :func:`edge.serve.run_server`; harmless outside systemd.

    - ``on_ready(server)``: ``READY=1`` (run_server calls it once every model is loaded and warmed up and the
      listeners are bound), with the models and addresses in ``STATUS=``;
    - ``on_tick()``: called by the server's event loop every ``tick_s``; sends ``WATCHDOG=1`` at most every
      ``WatchdogSec/2``. A loop that hangs stops ticking, so systemd restarts the server;
    - ``on_stopping()``: ``STOPPING=1`` when SIGTERM starts the drain (accepted requests are still answered).
    """

    def __init__(self, notifier: Notifier, interval: float | None, clock: Any = None) -> None:
        import time

        self.notifier = notifier
        self.interval = interval
        self._clock = clock or time.monotonic
        self._pinged = -math.inf
        self._status = "starting"
        self._stopping = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeNotifier:
        return cls(Notifier.from_env(environ), watchdog_interval(environ))

    @property
    def tick_s(self) -> float:
        """How often run_server should call :meth:`on_tick`: often enough for the watchdog, at most 1 s."""
        return min(1.0, self.interval / 2) if self.interval else 1.0

    def hooks(self) -> dict[str, Any]:
        """Keyword arguments for ``run_server``."""
        return {
            "on_ready": self.on_ready,
            "on_tick": self.on_tick,
            "on_stopping": self.on_stopping,
            "tick_s": self.tick_s,
        }

    def on_ready(self, server: Any) -> None:
        self._status = serve_status(server)
        self.notifier.notify(READY=1, STATUS=f"ready: {self._status}")
        self._pinged = self._clock()

    def on_tick(self) -> None:
        if self.interval is None:
            return
        now = self._clock()
        if now - self._pinged >= self.interval:
            self._pinged = now
            state = "draining" if self._stopping else "serving"
            self.notifier.notify(WATCHDOG=1, STATUS=f"{state}: {self._status}")

    def on_stopping(self) -> None:
        self._stopping = True
        self.notifier.notify(STOPPING=1, STATUS="stopping: draining accepted requests")

    def close(self) -> None:
        self.notifier.close()


def serve_status(server: Any) -> str:
    """``2 model(s) ready (yolo/1, cls/3); http :8000, grpc :8001`` from a started ``edge.serve.Server``."""
    models: list[str] = []
    repository = getattr(server, "repository", None)
    if repository is not None:
        try:
            models = [f"{r['name']}/{r['version']}" for r in repository.index() if r.get("state") == "READY"]
        except Exception:  # a status line must never stop the server
            models = []
    listens = [
        f"{proto} :{port}"
        for proto, port in (("http", getattr(server, "http_port", None)), ("grpc", getattr(server, "grpc_port", None)))
        if port is not None
    ]
    return f"{len(models)} model(s) ready ({', '.join(models)}); {', '.join(listens) or 'no listeners'}"
