"""``mjpeg://HOST:PORT``: a live annotated preview in any browser (``multipart/x-mixed-replace``).

``GET /`` is a page with the stream, ``GET /stream.mjpg`` the stream itself, ``GET /snapshot.jpg`` the
latest frame. Frames are encoded only while someone watches; a slow viewer skips frames and never
slows the pipeline (each client is sent the newest frame when it is ready for one).
"""

from __future__ import annotations

import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from edge.errors import SourceError
from edge.observer import FrameResult
from edge.sinks.base import FpsMeter
from edge.sinks.overlay import annotate

log = logging.getLogger("edge.sinks")
BOUNDARY = "edgeframe"
PAGE = b"""<!doctype html><html><head><title>edge preview</title></head>
<body style="margin:0;background:#111"><img src="/stream.mjpg" style="max-width:100%;display:block;margin:auto"></body></html>
"""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sink: MjpegSink


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        log.debug("mjpeg %s: " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        sink = self.server.sink
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE)
        elif path == "/snapshot.jpg":
            jpeg = sink.snapshot()
            if jpeg is None:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
            else:
                self._send(HTTPStatus.OK, "image/jpeg", jpeg)
        elif path in ("/stream", "/stream.mjpg"):
            self._stream(sink)
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found; try / or /stream.mjpg\n")

    def _send(self, status: HTTPStatus, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, sink: MjpegSink) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        seen = -1
        sink.add_client()
        try:
            while True:
                item = sink.wait_jpeg(seen, timeout=1.0)
                if item is None:
                    if sink.closed:
                        return
                    continue
                seen, jpeg = item
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                self.wfile.write(head + jpeg + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            return
        finally:
            sink.remove_client()


class MjpegSink:
    needs_image = True

    def __init__(self, uri: str, host: str, port: int, quality: int = 80) -> None:
        self.uri = uri
        self.host = host
        self.port = port
        self.quality = quality
        self.closed = False
        self._server: _Server | None = None
        self._cond = threading.Condition()
        self._clients = 0
        self._jpeg: bytes | None = None
        self._seq = 0
        self._latest: FrameResult | None = None
        self._meter = FpsMeter()
        self._fps = 0.0

    def open(self) -> None:
        try:
            server_class = _Server6 if ":" in self.host else _Server
            server = server_class((self.host, self.port), _Handler)
        except OSError as exc:
            raise SourceError(
                f"could not open sink {self.uri}: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        server.sink = self
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="mjpeg", daemon=True).start()
        log.info("mjpeg preview: %s", self.describe())

    def _encode(self, frame: FrameResult, fps: float) -> bytes:
        image: np.ndarray = annotate(frame, fps)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
            raise SourceError(f"sink {self.uri}: JPEG encoding failed")
        return buf.tobytes()

    def write(self, frame: FrameResult) -> None:
        if frame.image is None:
            return
        self._fps = self._meter.tick(frame.result_time)
        with self._cond:
            self._latest = frame
            watching = self._clients > 0
        if not watching:
            return
        jpeg = self._encode(frame, self._fps)
        with self._cond:
            self._jpeg = jpeg
            self._seq += 1
            self._cond.notify_all()

    def snapshot(self) -> bytes | None:
        with self._cond:
            latest, fps = self._latest, self._fps
        return None if latest is None else self._encode(latest, fps)

    def wait_jpeg(self, seen: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest JPEG once it is newer than ``seen``; None after ``timeout`` or when closed."""
        with self._cond:
            if self._seq == seen or self._jpeg is None:
                self._cond.wait_for(lambda: self.closed or (self._seq != seen and self._jpeg is not None), timeout)
            if self.closed or self._jpeg is None or self._seq == seen:
                return None
            return self._seq, self._jpeg

    def add_client(self) -> None:
        with self._cond:
            self._clients += 1
        log.info("mjpeg preview: viewer connected (%d watching)", self._clients)

    def remove_client(self) -> None:
        with self._cond:
            self._clients -= 1

    @property
    def clients(self) -> int:
        return self._clients

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def describe(self) -> str:
        host = "localhost" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"
