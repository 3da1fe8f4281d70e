"""The mqtt:// sink against a real broker (mosquitto) and a real subscriber: the broker stops mid-run and
comes back, the sink restarts while the broker is down, the queue overflows, credentials and TLS.

Delivery is documented as at least once: every frame id must arrive, first arrivals in order; a
message whose acknowledgement was lost may arrive twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.observer import FrameResult
from edge.results import Detections
from edge.sinks import open_sink
from edge.sinks.mqtt import MqttConfig, MqttSink
from tests.sinks.mosquitto import Broker, Subscriber, wait_for

TOPIC = "site/gate/events"


def frame(i: int, events: bool = True) -> FrameResult:
    dets = Detections(np.array([[10, 10, 50, 50]], np.float32), np.array([0.9], np.float32), np.array([0]), ("face",))
    evs = (
        [{"type": "line_crossed", "line": "door", "track_id": 1, "label": "face", "direction": "in"}] if events else []
    )
    return FrameResult(i, "test://", 1000.0 + i, 1000.0 + i, dets, None, {}, evs)


def first_arrivals(ids: list[int]) -> list[int]:
    seen: set[int] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def sink_for(broker: Broker, tmp_path: Path, query: str = "", **cfg: object) -> MqttSink:
    config = MqttConfig(**{"queue_dir": tmp_path / "state", "flush_timeout": 5.0, **cfg})  # type: ignore[arg-type]
    sink = open_sink(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}{query}", mqtt=config)
    assert isinstance(sink, MqttSink)
    return sink


def test_every_event_arrives_across_a_broker_restart(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port, TOPIC)
    sink = sink_for(broker, tmp_path)
    sink.open()
    try:
        for i in range(20):
            sink.write(frame(i))
        sink.write(frame(999, events=False))  # no events: nothing is published (publish=events)
        sub.wait_for_ids(set(range(20)))
        broker.stop()
        for i in range(20, 50):  # the broker is down: these wait on disk
            sink.write(frame(i))
        wait_for(lambda: not sink.connected, 10, "the sink to notice the broker is gone")
        assert len(sink.queue) >= 30
        broker.start()
        got = sub.wait_for_ids(set(range(50)))
        wait_for(lambda: len(sink.queue) == 0, 10, "the queue to empty once acknowledged")
    finally:
        sink.close()
        sub.close()
    assert 999 not in got
    assert first_arrivals(got) == list(range(50)), "in order, oldest first"
    assert sink.sent >= 50


def test_messages_queued_by_a_stopped_run_are_sent_by_the_next(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker")  # not started: the broker is down during the first run
    first = sink_for(broker, tmp_path, "?publish=detections", flush_timeout=0.2)
    first.open()
    for i in range(10):
        first.write(frame(i, events=False))  # publish=detections: frames with detections go out
    first.close()
    assert len(list((tmp_path / "state").glob("*.sqlite"))) == 1
    broker.start()
    try:
        sub = Subscriber(broker.port, TOPIC)
        second = sink_for(broker, tmp_path)
        second.open()
        try:
            got = sub.wait_for_ids(set(range(10)))
            wait_for(lambda: len(second.queue) == 0, 10, "the leftovers to be acknowledged")
        finally:
            second.close()
            sub.close()
    finally:
        broker.stop()
    assert first_arrivals(got) == list(range(10))


def test_a_full_queue_drops_the_oldest_and_counts_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker(tmp_path / "broker")
    sink = sink_for(broker, tmp_path, queue_max=5, flush_timeout=0.2)
    sink.open()
    with caplog.at_level(logging.WARNING, logger="edge.sinks.mqtt"):
        for i in range(8):
            sink.write(frame(i))
    assert sink.dropped == 3 and len(sink.queue) == 5
    assert "queue full (5 messages): dropped the oldest" in caplog.text
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=True)
    sink.register_metrics(registry)
    text = generate_latest(registry).decode()
    label = f'sink="mqtt://127.0.0.1:{broker.port}/{TOPIC}"'
    assert f"edge_mqtt_dropped_total{{{label}}} 3.0" in text
    assert f"edge_mqtt_queue_messages{{{label}}} 5.0" in text
    sink.close()
    broker.start()
    try:
        sub = Subscriber(broker.port, TOPIC)
        again = sink_for(broker, tmp_path)
        again.open()
        try:
            got = sub.wait_for_ids({3, 4, 5, 6, 7})
            wait_for(lambda: len(again.queue) == 0, 10, "the queue to empty")
        finally:
            again.close()
            sub.close()
    finally:
        broker.stop()
    assert first_arrivals(got) == [3, 4, 5, 6, 7], "the three oldest were dropped"


def test_credentials_from_the_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import subprocess

    passwd = tmp_path / "passwd"
    tool = Path(Broker(tmp_path / "probe").binary).parent.parent / "bin" / "mosquitto_passwd"
    if not tool.is_file():
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run([str(tool), "-b", "-c", str(passwd), "edge", "s3cret"], check=True)
    broker = Broker(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}\n").start()
    try:
        secret = tmp_path / "mqtt-password"
        secret.write_text("s3cret\n")
        cfg = MqttConfig.from_dict({"username": "edge", "password_file": str(secret), "queue_dir": str(tmp_path / "q")})
        sub = Subscriber(broker.port, TOPIC, username="edge", password="s3cret")
        sink = MqttSink(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}", cfg)
        sink.open()
        try:
            sink.write(frame(1))
            sub.wait_for_ids({1})
        finally:
            sink.close()
            sub.close()
        token = tmp_path / "token"
        token.write_text("s3cret")  # a token file: sent as the password, read when the sink opens
        with_token = MqttSink(
            f"mqtt://127.0.0.1:{broker.port}/{TOPIC}",
            MqttConfig.from_dict({"username": "edge", "token_file": "token", "queue_dir": "q3"}, base_dir=tmp_path),
        )
        sub = Subscriber(broker.port, TOPIC, username="edge", password="s3cret", client_id="second")
        with_token.open()
        try:
            with_token.write(frame(3))
            sub.wait_for_ids({3})
        finally:
            with_token.close()
            sub.close()
        wrong = MqttSink(
            f"mqtt://127.0.0.1:{broker.port}/{TOPIC}",
            MqttConfig(username="edge", password="nope", queue_dir=tmp_path / "q2", flush_timeout=0.1),
        )
        with caplog.at_level(logging.WARNING, logger="edge.sinks.mqtt"):
            wrong.open()
            wrong.write(frame(2))
            wait_for(lambda: "refused the connection" in caplog.text, 10, "the refusal to be logged")
            wrong.close()
        assert "Not authorized" in caplog.text or "not authorized" in caplog.text.lower()
        assert "s3cret" not in caplog.text and "nope" not in caplog.text
    finally:
        broker.stop()


def test_mqtts_with_the_brokers_ca(tmp_path: Path) -> None:
    from tests.sinks.certs import write_ca_and_server_cert

    ca, cert, key = write_ca_and_server_cert(tmp_path / "tls", "127.0.0.1")
    broker = Broker(
        tmp_path / "broker", extra=f"allow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
    ).start()
    try:
        import paho.mqtt.client as mqtt

        received: list[bytes] = []
        got = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-sub")
        c.tls_set(ca_certs=str(ca))
        c.on_connect = lambda cl, u, f, r, p: cl.subscribe(TOPIC, qos=1)
        c.on_message = lambda cl, u, m: (received.append(m.payload), got.set())
        subscribed = threading.Event()
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        assert subscribed.wait(10)
        sink = MqttSink(f"mqtts://127.0.0.1:{broker.port}/{TOPIC}", MqttConfig(ca_file=ca, queue_dir=tmp_path / "q"))
        sink.open()
        try:
            sink.write(frame(5))
            assert got.wait(20), "the message arrives over TLS"
        finally:
            sink.close()
            c.disconnect()
            c.loop_stop()
        assert b'"frame_id":5' in received[0]
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mqtt://user:pw@broker/t", "credentials do not belong in the URI"),
        ("mqtt://broker/a/#", "without wildcards"),
        ("mqtt://broker", "expected mqtt://broker:1883/site/gate/events"),
        ("mqtt://broker:99999/t", "port must be a number from 1 to 65535"),
        ("mqtt://broker/t?publish=all", "publish='all' is not one of events, detections"),
        ("mqtt://broker/t?qos=2", "unknown option 'qos'"),
    ],
)
def test_bad_uris_are_one_clear_error(uri: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        open_sink(uri)
    assert message in str(err.value)
    assert ":pw@" not in str(err.value), "a password in a URI is never echoed"


def test_default_ports_and_config_errors(tmp_path: Path) -> None:
    assert open_sink("mqtt://broker/t").port == 1883  # type: ignore[attr-defined]
    assert open_sink("mqtts://broker/t").port == 8883  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="give one of password, password_file and token_file"):
        MqttConfig.from_dict({"password": "a", "token_file": "t"})
    with pytest.raises(ConfigError, match=r"mqtt.token_file: .*missing-token not found"):
        MqttConfig.from_dict({"token_file": "missing-token"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="mqtt.qos: unknown key"):
        MqttConfig.from_dict({"qos": 2})
    with pytest.raises(ConfigError, match="give cert_file and key_file together"):
        (tmp_path / "c.pem").write_text("x")
        MqttConfig.from_dict({"cert_file": "c.pem"}, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("broker_host", "has", "lacks"),
    [
        ("broker.example", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "PrivateNetwork"),
        ("127.0.0.1", "IPAddressAllow=localhost", "PrivateNetwork"),
    ],
)
def test_a_service_unit_lets_the_sink_reach_its_broker(tmp_path: Path, broker_host: str, has: str, lacks: str) -> None:
    """``edge service install`` sandboxes the network by what the config needs: an MQTT sink is a client."""
    from edge.config import RunConfig
    from edge.service.systemd import plan_unit
    from edge.service.unit import render_unit

    cfg_path = tmp_path / "door.yaml"
    cfg_path.write_text("")
    data = {
        "model": str(tmp_path),
        "source": "test://",
        "sinks": [f"mqtt://{broker_host}/site/door?publish=detections"],
    }
    unit = render_unit(plan_unit(RunConfig.from_dict(data), cfg_path, "door", version=252).spec)
    assert has in unit and lacks not in unit
