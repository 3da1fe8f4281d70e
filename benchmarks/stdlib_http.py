"""The standard-library HTTP handler the pipeline API used before aiohttp, kept only as bench_http's baseline.

The same routes, auth and upload rules on ``http.server.ThreadingHTTPServer`` (one thread per connection),
serving the same :class:`edge.service.api.Api` object, so the benchmark compares the two HTTP stacks and
nothing else. Not part of the kit: nothing outside ``benchmarks/`` imports it.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from edge.errors import EdgeError
from edge.service.api import Api

log = logging.getLogger(__name__)

BOUNDARY = "edgeframe"
DRAIN_MAX_BYTES = 64 << 20


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: Api

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("HTTP connection from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "edge"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a client may stall a read or write before its connection is dropped
    disable_nagle_algorithm = True  # small replies go out at once (no 40 ms Nagle/delayed-ACK stalls)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Method, path without its query, status: never headers or query strings, so never a token.
        path = urlsplit(getattr(self, "path", "") or "").path
        log.debug("%s %s %s -> %s", self.address_string(), getattr(self, "command", "-"), path, code)

    def log_message(self, format: str, *args: Any) -> None:
        text = re.sub(r"\?[^\s'\"]*", "?...", format % args)  # query strings may hold secrets
        log.debug("%s %s", self.address_string(), text[:200])

    def _dispatch(self, method: str) -> None:
        api = self.server.api
        self._body_read = False  # the handler lives as long as the connection: reset per request
        self._headers_sent = False
        self._may_drain = True
        route = urlsplit(self.path).path
        handlers = ROUTES.get(route)
        label = route if handlers is not None else "other"
        code = 500
        try:
            if handlers is None:
                code = self.send_json(
                    404, {"error": f"no route {route}; see /v1/status, /v1/infer, /v1/stream, /metrics"}
                )
            elif method not in handlers:
                code = self.send_json(
                    405, {"error": f"{method} is not allowed on {route}"}, {"Allow": ", ".join(handlers)}
                )
            elif route != "/healthz" and not api.authorized(self.headers.get("Authorization")):
                code = self._unauthorized()
            else:
                code = handlers[method](self)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            code = 499  # the client went away
            self.close_connection = True
        except Exception:
            log.exception("HTTP %s %s failed", method, route)
            self.close_connection = True
            if not self._headers_sent:
                code = self.send_json(500, {"error": "internal error; see the service log"})
        finally:
            api.metrics.on_request(method, label, code)

    _headers_sent = False
    _body_read = False
    _may_drain = True  # False while answering Expect: 100-continue (the client holds the body back)

    def send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> int:
        return self.send_bytes(code, json.dumps(body).encode() + b"\n", "application/json", headers)

    def send_bytes(self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> int:
        if code >= 400 and self.command in ("POST", "PUT", "PATCH") and not self._body_read:
            # Read and drop a body up to the upload limit (so the client gets this answer, not a reset);
            # a longer or chunked one closes the connection instead of corrupting the next request.
            length = self.headers.get("Content-Length", "")
            limit = self.server.api.config.max_upload_bytes
            if (
                self._may_drain
                and not self.headers.get("Transfer-Encoding")
                and length.isdigit()
                and int(length) <= limit
            ):
                self._discard(int(length))
            if not self._body_read:
                self.close_connection = True
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._headers_sent = True
        self.wfile.write(data)
        return code

    # -- routes ----------------------------------------------------------------------------------
    def healthz(self) -> int:
        return self.send_bytes(200, b"ok\n", "text/plain; charset=utf-8")

    def readyz(self) -> int:
        state = self.server.api.state
        return self.send_json(200 if state == "running" else 503, {"ready": state == "running", "state": state})

    def metrics(self) -> int:
        text = self.server.api.metrics.render()
        return self.send_bytes(200, text, "text/plain; version=0.0.4; charset=utf-8")

    def status(self) -> int:
        return self.send_json(200, self.server.api.status())

    def infer(self) -> int:
        api = self.server.api
        if self.headers.get("Transfer-Encoding"):
            return self.send_json(
                411, {"error": "send the image with a Content-Length (chunked uploads are not accepted)"}
            )
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            return self.send_json(411, {"error": "Content-Length is required"})
        length = int(length_text)
        if length > api.config.max_upload_bytes:
            if length <= DRAIN_MAX_BYTES:
                self._discard(length)  # read and drop it, so the client gets its answer instead of a reset
            return self._too_large(length)
        body = self.rfile.read(length) if length else b""
        self._body_read = len(body) == length
        if len(body) < length:
            return self.send_json(400, {"error": f"upload ended after {len(body)} of {length} bytes"})
        started = time.perf_counter()
        try:
            code, payload, timings = api.infer(body, self.headers.get("Content-Type", ""))
        except EdgeError as exc:
            log.warning("POST /v1/infer: %s", exc)
            return self.send_json(500, {"error": f"inference failed: {exc}"})
        headers = {}
        if code == 200:
            total = (time.perf_counter() - started) * 1000.0
            api.metrics.infer_ms.observe(total)
            stages = [f"{k};dur={v:.3f}" for k, v in timings.items()] + [f"total;dur={total:.3f}"]
            headers["Server-Timing"] = ", ".join(stages)
        return self.send_json(code, payload, headers)

    def _unauthorized(self) -> int:
        headers = {"WWW-Authenticate": 'Bearer realm="edge"'}
        return self.send_json(401, {"error": "missing or invalid bearer token (Authorization: Bearer TOKEN)"}, headers)

    def _too_large(self, length: int) -> int:
        limit = f"{self.server.api.config.max_upload_mb:g} MB"
        return self.send_json(
            413, {"error": f"upload of {length} bytes is over the {limit} limit (http.max_upload_mb)"}
        )

    def _discard(self, length: int) -> None:
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                return
            left -= len(chunk)
        self._body_read = True

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: refuse an unauthorised or oversized upload before the client sends it."""
        length = self.headers.get("Content-Length", "")
        api = self.server.api
        route = urlsplit(self.path).path
        self._body_read, self._headers_sent, self._may_drain = False, False, False
        if self.command == "POST" and route in ROUTES and route != "/healthz":
            keep = self.close_connection
            self.close_connection = True  # on the refusals below the body is never read
            if not api.authorized(self.headers.get("Authorization")):
                api.metrics.on_request("POST", route, self._unauthorized())
                return False
            if length.isdigit() and int(length) > api.config.max_upload_bytes:
                api.metrics.on_request("POST", route, self._too_large(int(length)))
                return False
            self.close_connection = keep
        return super().handle_expect_100()

    def stream(self) -> int:
        api = self.server.api
        if not api.stream_slots.acquire(blocking=False):
            return self.send_json(503, {"error": "too many /v1/stream clients; try again later"})
        try:
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self._headers_sent = True
            for jpeg in api.jpeg_frames():
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                self.wfile.flush()
            self.wfile.write(f"--{BOUNDARY}--\r\n".encode())
            return 200
        finally:
            api.stream_slots.release()


ROUTES: dict[str, dict[str, Callable[[_Handler], int]]] = {
    "/healthz": {"GET": _Handler.healthz},
    "/readyz": {"GET": _Handler.readyz},
    "/metrics": {"GET": _Handler.metrics},
    "/v1/status": {"GET": _Handler.status},
    "/v1/infer": {"POST": _Handler.infer},
    "/v1/stream": {"GET": _Handler.stream},
}


class StdlibServer:
    """Serves ``api`` on ``host:0`` from a thread until :meth:`close`."""

    def __init__(self, api: Api, host: str = "127.0.0.1") -> None:
        self.server = (_Server6 if ":" in host else _Server)((host, 0), _Handler)
        self.server.api = api
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
