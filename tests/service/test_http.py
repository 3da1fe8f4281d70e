"""The HTTP API through the real aiohttp server and a real http.client, with the real RetinaFace model."""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ServiceError
from edge.observer import FrameResult
from edge.results import Detections, result_json
from edge.runtime.model import Model
from edge.service.api import image_size, multipart_file
from edge.service.config import HttpConfig
from edge.service.http import HttpObserver, read_token
from tests.runtime.bundles import photo
from tests.service import promtext
from tests.service.conftest import TOKEN, Client, decode_jpeg

PROTECTED = [("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/v1/status"), ("POST", "/v1/infer")]
AUTH_CASES = [
    (None, 401),  # no Authorization header
    ("Bearer wrong-token-0123456789abcdef", 401),
    (f"Bearer {TOKEN[:-1]}", 401),  # a prefix of the token
    (f"Bearer {TOKEN}x", 401),  # the token plus one character
    (f"Basic {TOKEN}", 401),  # right secret, wrong scheme
    ("Bearer", 401),
    (f"Bearer {TOKEN}", "ok"),
    (f"bearer   {TOKEN}", "ok"),  # scheme is case-insensitive, spaces tolerated
]


@pytest.mark.parametrize(("header", "expected"), AUTH_CASES)
@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_auth_matrix(
    api: tuple[HttpObserver, Client],
    jpeg: dict[str, bytes],
    method: str,
    path: str,
    header: str | None,
    expected: int | str,
) -> None:
    observer, client = api
    observer.on_start(observer.api.metrics.stats, None)  # type: ignore[arg-type]
    headers = {"Content-Type": "image/jpeg"}
    if header is not None:
        headers["Authorization"] = header
    body = jpeg["astronaut"] if method == "POST" else None
    reply = client.request(method, path, body=body, headers=headers, token=None)
    if expected == 401:
        assert reply.status == 401
        assert reply.headers["www-authenticate"] == 'Bearer realm="edge"'
        assert "bearer token" in reply.json()["error"]
    else:
        assert reply.status == 200, reply.body


def test_healthz_needs_no_token(api: tuple[HttpObserver, Client]) -> None:
    _, client = api
    reply = client.get("/healthz", token=None)
    assert (reply.status, reply.body) == (200, b"ok\n")


def test_readyz_follows_the_pipeline(api: tuple[HttpObserver, Client]) -> None:
    observer, client = api
    assert client.get("/readyz").status == 503  # model loaded, frames not yet flowing
    assert client.get("/readyz").json() == {"ready": False, "state": "starting"}
    observer.on_start(observer.api.metrics.stats, None)  # type: ignore[arg-type]
    assert client.get("/readyz").json() == {"ready": True, "state": "running"}
    observer.on_stop(observer.api.metrics.stats)
    assert client.get("/readyz").status == 503


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "camera"])
def test_infer_matches_the_model(
    api: tuple[HttpObserver, Client], face_model: Model, jpeg: dict[str, bytes], name: str
) -> None:
    _, client = api
    reply = client.infer(jpeg[name])
    assert reply.status == 200, reply.body
    got = reply.json()
    image = decode_jpeg(jpeg[name])
    expected = json.loads(json.dumps({"image": "upload", **result_json(face_model.predict(image))}))
    assert got == expected  # the JSON of `edge infer --json`
    assert len(got["detections"]) == (0 if name == "chelsea" else 1)
    assert re.fullmatch(
        r"preprocess;dur=[\d.]+, infer;dur=[\d.]+, postprocess;dur=[\d.]+, total;dur=[\d.]+",
        reply.headers["server-timing"],
    )


def test_infer_multipart_upload(api: tuple[HttpObserver, Client], jpeg: dict[str, bytes]) -> None:
    _, client = api
    boundary = "----edgetest"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="astro.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg["astronaut"]
        + f"\r\n--{boundary}--\r\n".encode()
    )
    reply = client.infer(body, f"multipart/form-data; boundary={boundary}")
    assert reply.status == 200, reply.body
    assert reply.json()["image"] == "astro.jpg" and len(reply.json()["detections"]) == 1


def _png_header(width: int, height: int) -> bytes:
    _, buf = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


BAD_UPLOADS = [
    (b"", "image/jpeg", 400, "empty upload"),
    (b"this is not an image at all", "image/jpeg", 400, "could not decode the 27-byte upload as an image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "image/jpeg", 400, "could not decode"),  # a truncated JPEG
    (_png_header(20000, 20000), "image/png", 413, "image of 20000x20000 pixels is over the 64 megapixel limit"),
    (
        b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nv\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
        400,
        "no file part",
    ),
    (b"x" * (1024 * 1024 + 1), "image/jpeg", 413, "upload of 1048577 bytes is over the 1 MB limit"),
]


@pytest.mark.parametrize(("body", "ctype", "status", "reason"), BAD_UPLOADS)
def test_bad_uploads(api: tuple[HttpObserver, Client], body: bytes, ctype: str, status: int, reason: str) -> None:
    _, client = api
    reply = client.infer(body, ctype)
    assert reply.status == status
    assert reason in reply.json()["error"]
    assert b"Traceback" not in reply.body


def test_oversized_upload_is_refused_before_the_body_is_read(api: tuple[HttpObserver, Client]) -> None:
    import socket

    observer, _ = api
    with socket.create_connection(("127.0.0.1", observer.port), timeout=10) as s:
        s.sendall(
            f"POST /v1/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: image/jpeg\r\nContent-Length: 500000000\r\n\r\n".encode()
        )
        head = s.recv(65536).decode()  # answered without the client sending a single body byte
    assert head.startswith("HTTP/1.1 413 ")
    assert "Connection: close" in head


def test_expect_100_continue_without_a_token_gets_401_before_the_body(api: tuple[HttpObserver, Client]) -> None:
    import socket

    observer, _ = api
    with socket.create_connection(("127.0.0.1", observer.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: image/jpeg\r\nContent-Length: 5000\r\n\r\n"
        )
        head = b"".join(iter(lambda: s.recv(65536), b"")).decode()
    assert head.startswith("HTTP/1.1 401 ") and "WWW-Authenticate: Bearer" in head


def test_keep_alive_survives_refused_uploads(api: tuple[HttpObserver, Client], jpeg: dict[str, bytes]) -> None:
    import http.client

    observer, _ = api
    conn = http.client.HTTPConnection("127.0.0.1", observer.port, timeout=30)
    good = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}
    statuses = []
    for headers, body in [
        ({"Content-Type": "image/jpeg"}, jpeg["astronaut"]),  # 401, body drained
        (good, b"junk"),  # 400
        (good, jpeg["astronaut"]),  # 200 on the same connection
    ]:
        conn.request("POST", "/v1/infer", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
    conn.close()
    assert statuses == [401, 400, 200]


def test_expect_100_continue_gets_413_before_the_body(api: tuple[HttpObserver, Client]) -> None:
    import socket

    observer, _ = api
    with socket.create_connection(("127.0.0.1", observer.port), timeout=10) as s:
        s.sendall(
            f"POST /v1/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\n"
            "Content-Type: image/jpeg\r\nContent-Length: 5000000\r\n\r\n".encode()
        )
        head = b"".join(iter(lambda: s.recv(65536), b"")).decode()  # until the server closes
    assert head.startswith("HTTP/1.1 413 ") and "over the 1 MB limit" in head


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "reason"),
    [
        ("GET", "/nope", {}, 404, "no route /nope"),
        ("DELETE", "/v1/infer", {}, 405, "DELETE is not allowed on /v1/infer"),
        ("GET", "/v1/infer", {}, 405, "GET is not allowed"),
        ("POST", "/v1/status", {}, 405, "POST is not allowed"),
        ("POST", "/v1/infer", {"Transfer-Encoding": "chunked"}, 411, "chunked uploads are not accepted"),
    ],
)
def test_routes_and_methods(
    api: tuple[HttpObserver, Client], method: str, path: str, headers: dict[str, str], status: int, reason: str
) -> None:
    _, client = api
    body = b"0\r\n\r\n" if headers.get("Transfer-Encoding") else None
    reply = client.request(method, path, body=body, headers=headers)
    assert reply.status == status
    assert reason in reply.json()["error"]


def test_a_failing_model_gets_500_without_a_traceback(
    face_model: Model, token_file: Path, jpeg: dict[str, bytes]
) -> None:
    class Broken:
        manifest = face_model.manifest

        def predict(self, image: np.ndarray) -> None:
            raise RuntimeError("CUDA exploded at 0xdeadbeef")

    config = HttpConfig.from_dict({"listen": "127.0.0.1:0", "token_file": str(token_file)})
    observer = HttpObserver(config, Broken(), environ={})
    try:
        reply = Client(observer.port).infer(jpeg["astronaut"])
    finally:
        observer.close()
    assert reply.status == 500
    assert reply.json() == {"error": "internal error; see the service log"}
    assert b"deadbeef" not in reply.body and b"Traceback" not in reply.body


def test_status_and_metrics(api: tuple[HttpObserver, Client], face_model: Model, jpeg: dict[str, bytes]) -> None:
    _, client = api
    assert client.infer(jpeg["astronaut"]).status == 200
    status = client.get("/v1/status").json()
    assert status["model"] == {
        "name": "retinaface",
        "backend": "onnxruntime-cpu",
        "artifact": "model.onnx",
        "precision": "fp32",
    }
    assert status["state"] == "starting" and status["http"]["auth"] == "token"
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples, _ = promtext.parse(metrics.body.decode())
    assert promtext.value(samples, "edge_http_requests_total", method="POST", route="/v1/infer", code="200") == 1
    assert promtext.value(samples, "edge_http_infer_latency_ms_count") == 1


def test_concurrent_uploads_share_the_model_safely(api: tuple[HttpObserver, Client], jpeg: dict[str, bytes]) -> None:
    _, client = api
    results: list[int] = []

    def worker(name: str) -> None:
        for _ in range(3):
            reply = client.infer(jpeg[name])
            results.append(len(reply.json()["detections"]) if reply.status == 200 else -1)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("astronaut", "chelsea", "astronaut", "chelsea")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0] * 6 + [1] * 6


def test_token_never_appears_in_logs_or_replies(
    api: tuple[HttpObserver, Client], jpeg: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = api
    caplog.set_level(logging.DEBUG)
    replies = [
        client.get("/healthz"),
        client.get("/v1/status"),
        client.get("/metrics"),
        client.get("/v1/status", token="wrong-" + TOKEN),
        client.get(f"/v1/status?token={TOKEN}", token=None),  # a token in the query: refused, and not logged
        client.infer(b"junk"),
        client.infer(jpeg["astronaut"]),
        client.request("DELETE", "/v1/infer"),
    ]
    assert [r.status for r in replies] == [200, 200, 200, 401, 401, 400, 200, 405]
    assert any("GET /v1/status" in r.getMessage() for r in caplog.records)  # requests are logged...
    for record in caplog.records:
        assert TOKEN not in record.getMessage()  # ...the token never is
        assert TOKEN[4:20] not in record.getMessage()
    for reply in replies:
        assert TOKEN.encode() not in reply.body


TOKEN_CASES = [
    ("s3kr1t\n", "at least 16 characters"),
    ("two w0rds here-in one t0ken file\n", "one word"),
    ("", "at least 16 characters"),
    (None, "cannot read the token (No such file or directory)"),
]


@pytest.mark.parametrize(("content", "reason"), TOKEN_CASES)
def test_bad_token_files(tmp_path_factory: pytest.TempPathFactory, content: str | None, reason: str) -> None:
    path = tmp_path_factory.mktemp("tok") / "token"  # a path that does not repeat the content
    if content is not None:
        path.write_text(content)
    config = HttpConfig.from_dict({"listen": "127.0.0.1:0", "token_file": str(path)})
    with pytest.raises(ServiceError, match=re.escape(reason)) as info:
        read_token(config, environ={})
    if content:
        assert content.strip() not in str(info.value)  # the message names the file, never its content


def test_token_from_systemd_credentials(tmp_path: Path, token_file: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "http-token").write_text("from-credentials-0123456789\n")
    config = HttpConfig.from_dict({"listen": "127.0.0.1:0", "token_file": str(token_file)})
    assert read_token(config, environ={"CREDENTIALS_DIRECTORY": str(creds)}) == b"from-credentials-0123456789"
    assert read_token(config, environ={}) == TOKEN.encode()


def test_auth_none_on_loopback(face_model: Model) -> None:
    observer = HttpObserver(HttpConfig.from_dict({"listen": "127.0.0.1:0", "auth": "none"}), face_model, environ={})
    try:
        assert Client(observer.port, token=None).get("/v1/status").status == 200
    finally:
        observer.close()


def test_listen_on_a_busy_port_is_a_clear_error(
    api: tuple[HttpObserver, Client], token_file: Path, face_model: Model
) -> None:
    observer, _ = api
    config = HttpConfig.from_dict({"listen": f"127.0.0.1:{observer.port}", "token_file": str(token_file)})
    with pytest.raises(
        ServiceError, match=rf"http.listen 127.0.0.1:{observer.port}: cannot listen \(Address already in use\)"
    ):
        HttpObserver(config, face_model, environ={})


def test_image_size_from_headers() -> None:
    for name in ("astronaut", "camera", "chelsea"):
        image = photo(name)
        for ext in (".png", ".jpg"):
            _, buf = cv2.imencode(ext, image)
            assert image_size(buf.tobytes()) == (image.shape[1], image.shape[0])
    assert image_size(b"GIF89a....") is None
    assert image_size(b"\xff\xd8\x00garbage") is None


def test_multipart_without_a_file_part() -> None:
    assert multipart_file(b"not multipart", "multipart/form-data") is None


def test_stream_clients_are_limited(api: tuple[HttpObserver, Client]) -> None:
    observer, client = api
    slots = observer.api.stream_slots
    taken = 0
    while slots.acquire(blocking=False):  # play four connected viewers
        taken += 1
    try:
        reply = client.get("/v1/stream")
    finally:
        for _ in range(taken):
            slots.release()
    assert taken == 4
    assert reply.status == 503 and "too many /v1/stream clients" in reply.json()["error"]


def test_ipv6_loopback(face_model: Model) -> None:
    import http.client

    observer = HttpObserver(HttpConfig.from_dict({"listen": "[::1]:0", "auth": "none"}), face_model, environ={})
    try:
        assert observer.listen == f"[::1]:{observer.port}"
        conn = http.client.HTTPConnection("::1", observer.port, timeout=10)
        conn.request("GET", "/v1/status")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["http"]["auth"] == "none"
        conn.close()
    finally:
        observer.close()


def test_clients_that_go_away_leave_no_error_and_the_next_request_is_served(
    api: tuple[HttpObserver, Client], jpeg: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    observer, client = api
    caplog.set_level(logging.DEBUG)
    observer.on_start(observer.api.metrics.stats, None)  # type: ignore[arg-type]
    observer.on_frame(
        FrameResult(1, "test://", 1.0, 1.0, Detections.empty(), image=photo("astronaut")),
        observer.api.metrics.stats,
    )
    data = jpeg["astronaut"]
    # Half an upload, then the client closes its socket.
    with socket.create_connection(("127.0.0.1", observer.port), timeout=10) as s:
        s.sendall(
            f"POST /v1/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data[: len(data) // 2]
        )
    # A stream viewer that reads the first frame and hangs up mid-stream.
    with socket.create_connection(("127.0.0.1", observer.port), timeout=10) as s:
        s.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        got = b""
        while b"Content-Type: image/jpeg" not in got:
            chunk = s.recv(65536)
            assert chunk, "the stream ended before a frame"
            got += chunk
    reply = client.infer(data)  # the server serves the next request
    assert reply.status == 200 and len(reply.json()["detections"]) == 1
    slots_back = [observer.api.stream_slots.acquire(blocking=True, timeout=10) for _ in range(4)]
    for ok in slots_back:
        if ok:
            observer.api.stream_slots.release()
    assert all(slots_back)  # the stream's slot came back when its viewer left
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
