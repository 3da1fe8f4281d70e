"""sd_notify against a real unix datagram socket, the way systemd listens on NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.observer import FrameResult, PipelineStats
from edge.results import Detections
from edge.service.notify import Notifier, NotifyObserver, status_line, watchdog_interval


class NotifySocket:
    """A bound AF_UNIX/SOCK_DGRAM socket: what systemd's manager reads notifications from."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + address[1:].encode() if address.startswith("@") else address)

    def recv(self, timeout: float = 5.0) -> dict[str, str] | None:
        """The next notification as a dict, or None when nothing arrives within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        return dict(line.split("=", 1) for line in data.decode().split("\n"))

    def recv_until(
        self, key: str, timeout: float = 10.0, value_prefix: str = ""
    ) -> tuple[dict[str, str], list[dict[str, str]]]:
        """Messages until one carrying ``key`` (with a value starting so): (that one, the ones before it)."""
        before: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg is None:
                break
            if key in msg and msg[key].startswith(value_prefix):
                return msg, before
            before.append(msg)
        raise AssertionError(f"no {key} within {timeout} s; got {before}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    address = str(tmp_path / "notify") if request.param == "path" else f"@edge-test-{os.getpid()}-{id(tmp_path)}"
    s = NotifySocket(address)
    yield s
    s.close()


def frame(i: int) -> FrameResult:
    return FrameResult(i, "test://", time.time(), time.time(), Detections.empty())


class Control:
    def set_fps_cap(self, fps: float | None) -> None:
        pass

    def stats(self) -> PipelineStats:
        return PipelineStats()


def test_notifier_sends_key_value_lines(notify_socket: NotifySocket) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": notify_socket.address})
    assert n.enabled
    assert n.notify(READY=1, STATUS="warming\nup")
    assert notify_socket.recv() == {"READY": "1", "STATUS": "warming up"}
    n.close()


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}])
def test_without_a_unix_socket_everything_is_a_no_op(env: dict[str, str]) -> None:
    obs = NotifyObserver.from_env(env)
    assert not obs.notifier.enabled
    assert obs.notifier.notify(READY=1) is False
    obs.on_start(PipelineStats(), Control())
    obs.on_frame(frame(1), PipelineStats(frames=1))
    assert obs._thread is None  # no ticker without systemd
    obs.on_stop(PipelineStats())
    obs.close()


def test_a_vanished_socket_never_fails_the_pipeline(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "gone"))
    assert n.notify(WATCHDOG=1) is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "abc"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_ready_only_at_start_then_watchdog_follows_frames(notify_socket: NotifySocket) -> None:
    # WatchdogSec=0.6 s: the ticker wakes every 0.3 s.
    obs = NotifyObserver.from_env({"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "600000"})
    assert obs.interval == pytest.approx(0.3)
    assert notify_socket.recv(timeout=0.3) is None  # nothing before the model is warmed up and frames flow
    stats = PipelineStats(frames=0, source_state={"test://": "running"})
    obs.on_start(stats, Control())
    ready = notify_socket.recv()
    assert ready is not None and ready["READY"] == "1" and ready["STATUS"].startswith("ready:")

    # Frames flowing: a feeder plays the pipeline's result thread; pings keep coming at the ticker's cadence.
    flowing = threading.Event()
    flowing.set()
    done = threading.Event()

    def feed() -> None:
        i = 0
        while not done.is_set():
            if flowing.is_set():
                i += 1
                obs.on_frame(frame(i), PipelineStats(frames=i, fps=50.0, source_state={"test://": "running"}))
            done.wait(0.02)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        pings = []
        t0 = time.monotonic()
        for _ in range(4):
            msg, _ = notify_socket.recv_until("WATCHDOG", timeout=2.0)
            pings.append(time.monotonic())
            assert msg["STATUS"].startswith("running: 50.0 fps") and "test:// running" in msg["STATUS"]
        gaps = [b - a for a, b in zip([t0, *pings], pings)]
        assert all(g < 0.6 for g in gaps[1:]), gaps  # every ping inside WatchdogSec

        # The pipeline stalls (threads alive, no frames): no more WATCHDOG=1, a "stalled" STATUS instead.
        flowing.clear()
        notify_socket.recv_until("STATUS", timeout=2.0, value_prefix="stalled:")
        quiet_until = time.monotonic() + 1.5  # 2.5 x WatchdogSec: systemd would have restarted us
        statuses = []
        while time.monotonic() < quiet_until:
            quiet = notify_socket.recv(timeout=max(0.01, quiet_until - time.monotonic()))
            if quiet is not None:
                assert "WATCHDOG" not in quiet, quiet
                statuses.append(quiet["STATUS"])
        assert statuses and all(s.startswith("stalled:") for s in statuses)

        # Frames again: pings resume.
        flowing.set()
        msg, _ = notify_socket.recv_until("WATCHDOG", timeout=2.0)
        assert msg["STATUS"].startswith("running:")
    finally:
        done.set()
        feeder.join()

    obs.on_stop(PipelineStats(frames=99))
    stopping, _ = notify_socket.recv_until("STOPPING")
    assert stopping["STOPPING"] == "1" and stopping["STATUS"].startswith("stopping: 0.0 fps, 99 frames")
    assert notify_socket.recv(timeout=0.5) is None  # the ticker is gone after STOPPING
    obs.close()


def test_reconnect_attempts_count_as_progress(notify_socket: NotifySocket) -> None:
    obs = NotifyObserver(Notifier(notify_socket.address), interval=60.0)  # ticks driven by hand
    obs.on_start(PipelineStats(), Control())
    notify_socket.recv_until("READY")
    assert obs.tick() is False  # nothing happened
    obs.on_event("reconnect", "rtsp://cam: reopening", {})
    assert obs.tick() is True
    assert notify_socket.recv_until("WATCHDOG")[0]["WATCHDOG"] == "1"
    obs.on_event("power", "mode 15W", {})  # other events are not progress
    assert obs.tick() is False
    obs.close()


def test_status_line() -> None:
    stats = PipelineStats(frames=1200, fps=29.84, dropped=3, reconnects=1, source_state={"csi://0": "running"})
    assert status_line(stats) == "running: 29.8 fps, 1200 frames, 3 dropped, 1 reconnects; csi://0 running"


def test_stopping_event_sends_stopping_once_and_pings_go_on_while_draining(notify_socket: NotifySocket) -> None:
    obs = NotifyObserver(Notifier(notify_socket.address), interval=60.0)  # ticks driven by hand
    obs.on_start(PipelineStats(), Control())
    notify_socket.recv_until("READY")
    obs.on_event("stopping", "SIGTERM: draining 2 frame(s) in flight", {"reason": "SIGTERM", "in_flight": 2})
    assert notify_socket.recv() == {"STOPPING": "1", "STATUS": "stopping: SIGTERM: draining 2 frame(s) in flight"}
    obs.on_event("stopping", "again", {})  # a second one sends nothing
    obs.on_frame(frame(1), PipelineStats(frames=1))  # a drained frame is progress: the watchdog is still fed
    assert obs.tick() is True
    ping = notify_socket.recv()
    assert ping is not None and ping["WATCHDOG"] == "1" and ping["STATUS"].startswith("draining: ")
    obs.on_stop(PipelineStats(frames=1))
    assert notify_socket.recv() == {"STATUS": status_line(PipelineStats(frames=1), "stopped")}
    assert notify_socket.recv(timeout=0.3) is None
    obs.close()
