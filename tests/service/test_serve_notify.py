"""`edge serve` as systemd runs it: READY=1 after every model is loaded and warmed up, WATCHDOG=1 from the
server's event loop, STOPPING=1 and a clean exit on SIGTERM; a real datagram socket and real HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from edge.service.notify import Notifier, ServeNotifier, serve_status
from tests.service.test_notify import NotifySocket


def get_json(port: int, path: str) -> tuple[int, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def test_edge_serve_under_a_notify_socket(tmp_path: Path, face_bundle: Path) -> None:
    notify = NotifySocket(str(tmp_path / "notify"))
    env = {**os.environ, "NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "2000000", "OMP_NUM_THREADS": "1"}
    env.pop("WATCHDOG_PID", None)
    argv = [sys.executable, "-m", "edge", "serve", str(face_bundle), "--http", "127.0.0.1:0", "--grpc", "off"]
    proc = subprocess.Popen(
        [*argv, "--no-auth", "--poll", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        ready, before = notify.recv_until("READY", timeout=120)
        assert before == []  # nothing (no watchdog ping) before READY=1
        assert ready["READY"] == "1"
        m = re.fullmatch(r"ready: 1 model\(s\) ready \(retinaface/(\S+)\); http :(\d+)", ready["STATUS"])
        assert m, ready
        port = int(m.group(2))
        # READY=1 means loaded and warmed up: the server answers ready, and the model is READY, at once.
        assert get_json(port, "/v2/health/ready")[0] == 200
        assert get_json(port, "/v2/models/retinaface/ready")[0] == 200
        # The watchdog is fed from the event loop (WatchdogSec/2 = 1 s here).
        ping, _ = notify.recv_until("WATCHDOG", timeout=10)
        assert ping["WATCHDOG"] == "1" and ping["STATUS"].startswith("serving: 1 model(s) ready")
        proc.send_signal(signal.SIGTERM)
        stopping, _ = notify.recv_until("STOPPING", timeout=30)
        assert stopping == {"STOPPING": "1", "STATUS": "stopping: draining accepted requests"}
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        notify.close()
    assert not any("Traceback" in line for line in log), "".join(log)


class Clock:
    """A hand-driven monotonic clock, so the pacing below is checked without waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeServer:
    """The attributes of edge.serve.Server that the status line reads."""

    http_port = 8000
    grpc_port = 8001

    class repository:  # an attribute stand-in
        @staticmethod
        def index() -> list[dict[str, str]]:
            return [
                {"name": "cls", "version": "3", "state": "READY", "reason": ""},
                {"name": "cls", "version": "4", "state": "UNAVAILABLE", "reason": "bad bundle"},
                {"name": "yolo", "version": "1", "state": "READY", "reason": ""},
            ]


def test_watchdog_pings_are_paced_by_the_interval(tmp_path: Path) -> None:
    notify = NotifySocket(str(tmp_path / "notify"))
    clock = Clock()
    hooks = ServeNotifier(Notifier(notify.address), interval=5.0, clock=clock)
    try:
        assert hooks.tick_s == 1.0
        hooks.on_ready(FakeServer())
        assert notify.recv() == {
            "READY": "1",
            "STATUS": "ready: 2 model(s) ready (cls/3, yolo/1); http :8000, grpc :8001",
        }
        for _ in range(4):  # ticks within the interval send nothing
            clock.now += 1.0
            hooks.on_tick()
        assert notify.recv(timeout=0.2) is None
        clock.now += 1.0
        hooks.on_tick()
        assert notify.recv() == {
            "WATCHDOG": "1",
            "STATUS": "serving: 2 model(s) ready (cls/3, yolo/1); http :8000, grpc :8001",
        }
        hooks.on_stopping()
        assert notify.recv() == {"STOPPING": "1", "STATUS": "stopping: draining accepted requests"}
        clock.now += 5.0
        hooks.on_tick()  # the loop still turns while draining: the watchdog is still fed
        assert notify.recv()["STATUS"].startswith("draining: ")  # type: ignore[index]
    finally:
        hooks.close()
        notify.close()


def test_without_a_watchdog_ticks_send_nothing(tmp_path: Path) -> None:
    notify = NotifySocket(str(tmp_path / "notify"))
    hooks = ServeNotifier.from_env({"NOTIFY_SOCKET": notify.address})
    try:
        assert hooks.interval is None and hooks.tick_s == 1.0
        hooks.on_tick()
        assert notify.recv(timeout=0.2) is None
    finally:
        hooks.close()
        notify.close()


def test_status_line_without_a_repository() -> None:
    class Bare:
        http_port = None
        grpc_port = 9001

    assert serve_status(Bare()) == "0 model(s) ready (); grpc :9001"


def test_a_hung_event_loop_starves_the_watchdog(tmp_path: Path, face_bundle: Path) -> None:
    """The real server in process: while its event loop is blocked, no WATCHDOG=1; once free, pings resume."""
    import asyncio

    from edge.serve import ServeOptions, run_server

    notify = NotifySocket(str(tmp_path / "notify"))
    hooks = ServeNotifier(Notifier(notify.address), interval=0.2)
    release = threading.Event()
    state: dict[str, Any] = {}

    def ready(server: Any) -> None:
        state["server"], state["loop"] = server, asyncio.get_running_loop()  # called on the server's loop
        hooks.on_ready(server)

    options = ServeOptions(repository=face_bundle, http=("127.0.0.1", 0), grpc=None, auth=False, poll_s=0)
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            run_server(
                options,
                on_ready=ready,
                on_tick=hooks.on_tick,
                on_stopping=hooks.on_stopping,
                tick_s=hooks.tick_s,
                install_signals=False,
            )
        ),
        daemon=True,
    )
    thread.start()
    try:
        notify.recv_until("READY", timeout=120)
        notify.recv_until("WATCHDOG", timeout=10)  # the loop turns: pings
        blocked = threading.Event()

        def block() -> None:  # a callback that holds the loop until released
            blocked.set()
            release.wait()

        state["loop"].call_soon_threadsafe(block)
        assert blocked.wait(30)
        while notify.recv(timeout=0.05) is not None:  # pings sent before the loop stopped turning
            pass
        assert notify.recv(timeout=1.0) is None  # five intervals without a ping
        release.set()
        assert notify.recv_until("WATCHDOG", timeout=10)[0]["WATCHDOG"] == "1"  # free again: pings resume
    finally:
        release.set()
        if "server" in state:
            state["server"].request_stop()
        thread.join(timeout=60)
        hooks.close()
        notify.close()
    assert result == [0]
