"""`edge run` as systemd runs it: NOTIFY_SOCKET and WATCHDOG_USEC set, a real datagram socket, SIGTERM to stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import cv2

from tests.runtime.bundles import photo
from tests.service.conftest import TOKEN, Client
from tests.service.test_notify import NotifySocket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_edge_run_under_a_notify_socket(
    tmp_path: Path, face_bundle: Path, token_file: Path, jpeg: dict[str, bytes]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "astronaut.png"), photo("astronaut"))
    port = free_port()
    config = tmp_path / "cam.yaml"
    config.write_text(
        f"model: {face_bundle}\nsource: file://{photos}?loop=true&fps=20\n"
        f"http: {{listen: 127.0.0.1:{port}, token_file: {token_file}}}\n"
    )
    notify = NotifySocket(str(tmp_path / "notify"))
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify.address,
        "WATCHDOG_USEC": "1000000",
        "EDGE_STATE_DIR": str(tmp_path / "state"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "-v", "run", str(config)],
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
        ready_at = time.time()
        assert before == []  # nothing is announced before READY
        assert ready["STATUS"].startswith("ready:")

        client = Client(port)
        assert client.get("/readyz").json() == {"ready": True, "state": "running"}
        reply = client.infer(jpeg["astronaut"])
        assert reply.status == 200 and len(reply.json()["detections"]) == 1

        pings = [notify.recv_until("WATCHDOG", timeout=3)[0] for _ in range(3)]  # WatchdogSec=1 s: every 0.5 s
        assert all(p["STATUS"].startswith("running:") and "fps" in p["STATUS"] for p in pings)

        proc.send_signal(signal.SIGTERM)
        stopping, _ = notify.recv_until("STOPPING", timeout=30)
        # Sent from the SIGTERM handler's stop(), as draining starts (not after it ends).
        assert stopping["STATUS"].startswith("stopping: SIGTERM: draining ")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    reader.join(10)
    text = "".join(log)
    assert "Traceback" not in text
    assert TOKEN not in text and TOKEN not in (proc.stdout.read() if proc.stdout else "")
    # READY came after the model was loaded and warmed up (edge.runtime logs "loaded ..." after warm-up).
    loaded = next(line for line in log if re.search(r"edge\.runtime: loaded retinaface", line))
    stamp = datetime.strptime(loaded[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    assert "warm-up: 2 iterations" in text
    assert stamp <= ready_at
