"""A real MQTT broker for tests (Debian's mosquitto) on a free loopback port, and a real subscriber (paho-mqtt).

The broker keeps its state in a temp folder (``persistence true``): a subscriber's session and the QoS 1
messages queued for it survive a stop and start of the broker, as on a production broker.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()), None
    )
    if found is None:
        pytest.skip("mosquitto is not installed (scripts/setup.sh installs it: apt-get install mosquitto)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Any, timeout: float, what: str) -> None:
    """Poll ``condition()`` (a state of a real process or connection) until true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        pause.wait(0.02)


class Broker:
    def __init__(self, folder: Path, extra: str = "", port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.binary = mosquitto_binary()
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        body = extra or "allow_anonymous true\n"
        # run as ourselves: started as root, mosquitto would switch to its own user, who cannot write here
        self.conf.write_text(
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\n{body}persistence true\n"
            f"persistence_location {folder}/\nlog_dest file {folder}/mosquitto.log\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL)
        proc = self.proc

        def listening() -> bool:
            if proc.poll() is not None:
                log = (self.folder / "mosquitto.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"mosquitto exited with {proc.returncode}: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(listening, 10, f"mosquitto to listen on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file and exits
            self.proc.wait(10)
        self.proc = None


class Subscriber:
    """A QoS 1 subscriber with a persistent session that reconnects by itself; collects JSON payloads."""

    def __init__(
        self, port: int, topic: str, client_id: str = "test-subscriber", tls_ca: Path | None = None, **auth: str
    ) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.topic = topic
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if auth:
            c.username_pw_set(auth["username"], auth["password"])
        c.reconnect_delay_set(1, 1)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = self._on_message
        self.client = c
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError("the subscriber could not subscribe")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.cond:
            self.messages.append(json.loads(msg.payload))
            self.cond.notify_all()

    def frame_ids(self) -> list[int]:
        with self.cond:
            return [int(m["frame_id"]) for m in self.messages]

    def wait_for_ids(self, wanted: set[int], timeout: float = 20.0) -> list[int]:
        with self.cond:
            ok = self.cond.wait_for(lambda: wanted <= {int(m["frame_id"]) for m in self.messages}, timeout)
        got = self.frame_ids()
        assert ok, f"missing frame ids {sorted(wanted - set(got))}; got {got}"
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
