"""``mqtt://HOST:PORT/TOPIC`` and ``mqtts://`` (TLS): events to an MQTT broker, nothing lost while it is down.

One message per frame, QoS 1, the frame's JSON line as the payload (the same object the JSONL sink
writes): by default only frames with analytics events (``?publish=events``), or every frame with at
least one detection (``?publish=detections``).

Delivery is **at least once**. Every message is first appended to a bounded on-disk queue
(:class:`~edge.sinks.diskqueue.DiskQueue`, in ``$EDGE_STATE_DIR/mqtt`` unless ``mqtt.queue_dir`` says
otherwise) and deleted only when the broker acknowledges it (PUBACK). While the broker is down the
queue fills; when it is back, the queue is sent in order, oldest first, before newer messages; what is
left when the run stops is sent by the next run. A message whose acknowledgement was lost with the
connection is sent again, so a subscriber may see a message twice (never zero times, unless the
queue overflowed): deduplicate on ``source`` + ``frame_id`` + ``capture_time`` where exactly once
matters. When the queue is full, the oldest message is dropped, counted (``edge_mqtt_dropped_total``)
and logged.

Credentials and TLS files come from the run config's ``mqtt`` section, never from the URI or the
command line. The network runs on the sink's own thread: ``write`` only appends to the queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from edge.configkit import Reader
from edge.errors import ConfigError, SourceError
from edge.observer import FrameResult

log = logging.getLogger("edge.sinks.mqtt")

PUBLISH = ("events", "detections")
WINDOW = 32  # messages published and not yet acknowledged
POLL_S = 0.05  # the network thread's longest wait
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 10.0
WARN_EVERY_S = 30.0
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class MqttConfig:
    """The ``mqtt`` section of a run config (shared by every mqtt:// sink of the run)."""

    username: str | None = None
    password: str | None = None  # from password or password_file
    token_file: Path | None = None  # a token sent as the password, read when the sink opens
    ca_file: Path | None = None  # mqtts: the broker's CA (default: the system's)
    cert_file: Path | None = None  # mqtts: a client certificate, with key_file
    key_file: Path | None = None
    queue_max: int = 10000  # messages kept while the broker is down; the oldest go first
    queue_dir: Path | None = None  # default $EDGE_STATE_DIR/mqtt (the service's state directory)
    flush_timeout: float = 5.0  # seconds a stopping run waits for the broker to acknowledge the queue
    keepalive: int = 30

    @classmethod
    def from_dict(cls, data: object, path: str = "mqtt", base_dir: Path | None = None) -> MqttConfig:
        r = Reader(data, path)

        def file(key: str) -> Path | None:
            value = r.str(key, None)
            if value is None:
                return None
            p = Path(value).expanduser()
            return (base_dir / p) if base_dir is not None and not p.is_absolute() else p

        username = r.str("username", None)
        password = r.str("password", None)
        password_file = file("password_file")
        token_file = file("token_file")
        if sum(x is not None for x in (password, password_file, token_file)) > 1:
            raise ConfigError(f"{path}: give one of password, password_file and token_file")
        if password_file is not None:
            password = _read_secret(password_file, r.where("password_file"))
        cfg = cls(
            username=username,
            password=password,
            token_file=token_file,
            ca_file=file("ca_file"),
            cert_file=file("cert_file"),
            key_file=file("key_file"),
            queue_max=r.int("queue_max", 10000, min=1),
            queue_dir=file("queue_dir"),
            flush_timeout=r.duration("flush_timeout", 5.0),
            keepalive=r.int("keepalive", 30, min=5, max=3600),
        )
        r.finish()
        if (cfg.cert_file is None) != (cfg.key_file is None):
            raise ConfigError(f"{path}: give cert_file and key_file together (a client certificate and its key)")
        for key in ("ca_file", "cert_file", "key_file", "token_file"):
            p = getattr(cfg, key)
            if p is not None and not p.is_file():
                raise ConfigError(f"{path}.{key}: {p} not found")
        return cfg


def _read_secret(p: Path, where: str) -> str:
    try:
        value = p.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {p}: {exc.strerror or exc}") from None
    if not value:
        raise ConfigError(f"{where}: {p} is empty")
    return value


def parse_mqtt_uri(uri: str) -> tuple[bool, str, int, str, dict[str, str]]:
    """``(tls, host, port, topic, options)`` from ``mqtt[s]://HOST[:PORT]/TOPIC[?publish=...]``."""
    m = re.match(r"^(mqtts?)://([^/?#]*)/([^?]*)(?:\?(.*))?$", uri.strip(), re.IGNORECASE)
    example = "mqtt://broker:1883/site/gate/events"
    if m is None:
        raise ConfigError(f"{uri}: expected {example} (a host and a topic)")
    tls = m.group(1).lower() == "mqtts"
    netloc, topic, query = m.group(2), m.group(3), m.group(4) or ""
    if "@" in netloc:
        raise ConfigError(
            f"{_redact(uri)}: credentials do not belong in the URI; put username and password_file "
            "(or token_file) in the config's mqtt section"
        )
    host, sep, port_s = netloc.rpartition(":")
    if not sep or "]" in port_s:
        host, port_s = netloc, ""
    host = host.strip("[]")
    if not host:
        raise ConfigError(f"{uri}: expected a broker host, as in {example}")
    if port_s and (not port_s.isdigit() or not 0 < int(port_s) < 65536):
        raise ConfigError(f"{uri}: the port must be a number from 1 to 65535, got {port_s!r}")
    port = int(port_s) if port_s else (8883 if tls else 1883)
    if not topic or any(c in topic for c in "+#") or "\0" in topic:
        raise ConfigError(f"{uri}: expected a topic without wildcards (+, #) after the host, as in {example}")
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "publish":
            raise ConfigError(f"{uri}: unknown option {key!r} for mqtt:// sinks; valid: publish")
        if value not in PUBLISH:
            raise ConfigError(f"{uri}: publish={value!r} is not one of {', '.join(PUBLISH)}")
        options[key] = value
    return tls, host, port, topic, options


def _redact(uri: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", uri)


class MqttSink:
    needs_image = False

    def __init__(self, uri: str, config: MqttConfig | None = None) -> None:
        self.uri = uri
        self.tls, self.host, self.port, self.topic, options = parse_mqtt_uri(uri)
        self.publish = options.get("publish", "events")
        self.config = config or MqttConfig()
        self.queue: Any = None  # DiskQueue once open
        self.sent = 0  # acknowledged by the broker (this run)
        self.dropped = 0  # dropped because the queue was full (this run)
        self.connected = False
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._last_warn = 0.0  # connection problems
        self._last_drop_warn = 0.0

    # ---- Sink ----------------------------------------------------------------------------------------
    def queue_path(self) -> Path:
        if self.config.queue_dir is not None:
            base = self.config.queue_dir
        else:
            from edge.runtime import default_state_dir

            base = default_state_dir() / "mqtt"
        key = f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}/{self.topic}"
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{self.host}-{self.port}-{self.topic}").strip("-")[:60]
        return base / f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.sqlite"

    def open(self) -> None:
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError:
            raise SourceError(
                f"could not open sink {self.uri}: paho-mqtt is not installed; pip install -e '.[events]'"
            ) from None
        from edge.sinks.diskqueue import DiskQueue

        self._password()  # a token file that cannot be read fails now, not on the network thread
        self.queue = DiskQueue(self.queue_path(), self.config.queue_max)
        if len(self.queue):
            log.info("mqtt %s: %d message(s) left by an earlier run are sent first", self.describe(), len(self.queue))
        self._thread = threading.Thread(target=self._run, name="mqtt-sink", daemon=True)
        self._thread.start()

    def write(self, frame: FrameResult) -> None:
        if self.queue is None:
            return
        if self.publish == "events" and not frame.events:
            return
        if self.publish == "detections" and not len(frame.result):
            return
        from edge.sinks.files import event_json

        body = json.dumps(event_json(frame), separators=(",", ":")).encode("utf-8")
        dropped = self.queue.put(body)
        if dropped:
            self.dropped += dropped
            self._warn_drops()

    def close(self) -> None:
        if self._thread is not None:
            self._closing.set()
            self._thread.join(self.config.flush_timeout + 10.0)
            self._thread = None
        if self.queue is not None:
            left = len(self.queue)
            if left:
                log.warning(
                    "mqtt %s: %d message(s) not acknowledged yet stay queued in %s for the next run",
                    self.describe(),
                    left,
                    self.queue.path,
                )
            if self.dropped:
                log.warning("mqtt %s: %d message(s) dropped in all (queue full)", self.describe(), self.dropped)
            self.queue.close()
            self.queue = None

    def describe(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}/{self.topic}"

    # ---- counters --------------------------------------------------------------------------------------
    def register_metrics(self, registry: Any) -> None:
        registry.register(_Collector(self))

    def _warn_drops(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_warn >= WARN_EVERY_S or self._last_drop_warn == 0.0:
            self._last_drop_warn = now
            log.warning(
                "mqtt %s: queue full (%d messages): dropped the oldest, %d so far",
                self.describe(),
                self.config.queue_max,
                self.dropped,
            )

    # ---- the network thread ----------------------------------------------------------------------------
    def _password(self) -> str | None:
        if self.config.token_file is not None:
            return _read_secret(self.config.token_file, "mqtt.token_file")
        return self.config.password

    def _client(self) -> Any:
        import paho.mqtt.client as mqtt

        client_id = f"edge-{socket.gethostname()}-{os.getpid()}-{id(self) % 10000}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        password = self._password()
        if self.config.username is not None or password is not None:
            client.username_pw_set(self.config.username or "", password)
        if self.tls:
            c = self.config
            client.tls_set(
                ca_certs=str(c.ca_file) if c.ca_file else None,
                certfile=str(c.cert_file) if c.cert_file else None,
                keyfile=str(c.key_file) if c.key_file else None,
            )
        return client

    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._closing.is_set():
            try:
                problem = self._session()
            except Exception as exc:  # a bug or a disk error must not end delivery silently: log, retry
                log.error("mqtt %s: %s: %s", self.describe(), type(exc).__name__, exc, exc_info=True)
                problem = None
            if self._closing.is_set():
                break
            if self.connected:  # it was up: try again soon
                backoff = BACKOFF_MIN_S
            self.connected = False
            if problem:
                self._warn(problem)
            self._closing.wait(backoff)
            backoff = min(BACKOFF_MAX_S, backoff * 2)
        self.connected = False

    def _warn(self, problem: str) -> None:
        now = time.monotonic()
        if now - self._last_warn >= WARN_EVERY_S or self._last_warn == 0.0:
            self._last_warn = now
            queued = len(self.queue) if self.queue is not None else 0
            log.warning("mqtt %s: %s; %d message(s) queued on disk, retrying", self.describe(), problem, queued)

    def _session(self) -> str | None:
        """One connection: send the queue in order until it drops or the sink closes; why it ended."""
        import paho.mqtt.client as mqtt

        state: dict[str, Any] = {"up": False, "refused": None, "down": False, "acked": []}

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                state["refused"] = str(reason)
            else:
                state["up"] = True

        def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            state["down"] = True

        def on_publish(client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            state["acked"].append(mid)

        try:
            client = self._client()
            client.on_connect, client.on_disconnect, client.on_publish = on_connect, on_disconnect, on_publish
            client.connect(self.host, self.port, keepalive=self.config.keepalive)
        except (OSError, ValueError) as exc:
            return f"cannot connect: {getattr(exc, 'strerror', None) or exc}"
        inflight: dict[int, int] = {}  # mid -> queue id
        last = 0  # the newest queue id published on this connection
        flush_until: float | None = None
        answer_by = time.monotonic() + CONNECT_TIMEOUT_S
        try:
            while True:
                rc = client.loop(timeout=POLL_S)
                if state["refused"]:
                    return f"the broker refused the connection: {state['refused']}"
                if rc != mqtt.MQTT_ERR_SUCCESS or state["down"]:
                    return "connection lost" if state["up"] else "no answer to CONNECT"
                if not state["up"]:
                    if self._closing.is_set():
                        return None
                    if time.monotonic() > answer_by:
                        return "no answer to CONNECT"
                    continue
                if not self.connected:
                    self.connected = True
                    log.info("mqtt %s: connected; %d message(s) queued", self.describe(), len(self.queue))
                if state["acked"]:
                    acked, state["acked"] = state["acked"], []
                    done = [inflight.pop(mid) for mid in acked if mid in inflight]
                    self.queue.delete(done)
                    self.sent += len(done)
                if len(inflight) < WINDOW:
                    for qid, body in self.queue.peek(last, WINDOW - len(inflight)):
                        info = client.publish(self.topic, body, qos=1)
                        if info.rc != mqtt.MQTT_ERR_SUCCESS:
                            return f"publish failed: {mqtt.error_string(info.rc)}"
                        inflight[info.mid] = qid
                        last = qid
                if self._closing.is_set():
                    if flush_until is None:
                        flush_until = time.monotonic() + self.config.flush_timeout
                    if not len(self.queue) or time.monotonic() >= flush_until:
                        return None
        finally:
            try:
                client.disconnect()
                client.loop(timeout=0.01)  # sends DISCONNECT where the connection is up, closes the socket
            except Exception:  # the connection is gone anyway
                pass
            sock = client.socket()
            if sock is not None:
                sock.close()


class _Collector:
    def __init__(self, sink: MqttSink) -> None:
        self.sink = sink

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.sink
        label = [s.describe()]
        sent = CounterMetricFamily("edge_mqtt_sent", "Messages acknowledged by the broker", labels=["sink"])
        sent.add_metric(label, s.sent)
        dropped = CounterMetricFamily(
            "edge_mqtt_dropped", "Messages dropped because the queue was full", labels=["sink"]
        )
        dropped.add_metric(label, s.dropped)
        depth = GaugeMetricFamily(
            "edge_mqtt_queue_messages", "Messages waiting on disk for the broker", labels=["sink"]
        )
        depth.add_metric(label, len(s.queue) if s.queue is not None else 0)
        up = GaugeMetricFamily("edge_mqtt_connected", "1 while connected to the broker", labels=["sink"])
        up.add_metric(label, 1 if s.connected else 0)
        yield from (sent, dropped, depth, up)
