"""``mjpeg://HOST:PORT``: a live annotated preview in any browser (``multipart/x-mixed-replace``).

``GET /`` is a page with the stream, ``GET /stream.mjpg`` the stream itself, ``GET /snapshot.jpg`` the
latest frame. Frames are encoded only while someone watches; a slow viewer skips frames and never
slows the pipeline (each client is sent the newest frame when it is ready for one).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
VIEWER_THREADS = 32  # a viewer holds a thread only while it waits for the next frame (at most 1 s at a time)


def _app(sink: MjpegSink, pool: ThreadPoolExecutor) -> Any:
    """The aiohttp application of one sink (aiohttp is imported here: ``import edge.sinks`` stays light)."""
    from aiohttp import web

    def plain(status: int, ctype: str, body: bytes) -> web.Response:
        return web.Response(status=status, body=body, headers={"Content-Type": ctype, "Cache-Control": "no-store"})

    async def page(request: web.Request) -> web.StreamResponse:
        return plain(200, "text/html; charset=utf-8", PAGE)

    async def snapshot(request: web.Request) -> web.StreamResponse:
        jpeg = await asyncio.get_running_loop().run_in_executor(pool, sink.snapshot)
        if jpeg is None:
            return plain(503, "text/plain", b"no frame yet\n")
        return plain(200, "image/jpeg", jpeg)

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", "Cache-Control": "no-store"}
        )
        resp.force_close()
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        seen = -1
        sink.add_client()
        try:
            while True:
                item = await loop.run_in_executor(pool, sink.wait_jpeg, seen, 1.0)
                if item is None:
                    if sink.closed:
                        break
                    continue
                seen, jpeg = item
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                await resp.write(head + jpeg + b"\r\n")
        except ConnectionError:  # the viewer went away
            pass
        finally:
            sink.remove_client()
        return resp

    async def not_found(request: web.Request) -> web.StreamResponse:
        return plain(404, "text/plain", b"not found; try / or /stream.mjpg\n")

    @web.middleware
    async def logged(request: web.Request, handler: Any) -> web.StreamResponse:
        resp: web.StreamResponse = await handler(request)
        log.debug("mjpeg %s: GET %s %s", request.remote, request.path, resp.status)
        return resp

    app = web.Application(middlewares=[logged])
    for path in ("/", "/index.html"):
        app.router.add_get(path, page)
    app.router.add_get("/snapshot.jpg", snapshot)
    for path in ("/stream", "/stream.mjpg"):
        app.router.add_get(path, stream)
    app.router.add_get("/{tail:.*}", not_found)
    return app


class MjpegSink:
    needs_image = True

    def __init__(self, uri: str, host: str, port: int, quality: int = 80) -> None:
        self.uri = uri
        self.host = host
        self.port = port
        self.quality = quality
        self.closed = False
        self._loop: Any = None  # edge.service.aio.LoopThread while open
        self._runner: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._cond = threading.Condition()
        self._clients = 0
        self._jpeg: bytes | None = None
        self._seq = 0
        self._latest: FrameResult | None = None
        self._meter = FpsMeter()
        self._fps = 0.0

    def open(self) -> None:
        from edge.service.aio import LoopThread, bind_socket

        try:
            sock = bind_socket(self.host, self.port)
        except OSError as exc:
            raise SourceError(
                f"could not open sink {self.uri}: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = int(sock.getsockname()[1])
        self._pool = ThreadPoolExecutor(VIEWER_THREADS, thread_name_prefix="mjpeg")
        self._loop = LoopThread("mjpeg")
        try:
            self._runner = self._loop.call(self._serve(sock), timeout=30)
        except BaseException:
            sock.close()
            self._stop()
            raise
        log.info("mjpeg preview: %s", self.describe())

    async def _serve(self, sock: Any) -> Any:
        from aiohttp import web

        assert self._pool is not None
        runner = web.AppRunner(_app(self, self._pool), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        return runner

    def _stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

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
        runner, self._runner = self._runner, None
        if runner is not None and self._loop is not None:
            try:
                self._loop.call(runner.cleanup(), timeout=10)  # stops listening, ends the streams
            except Exception:
                log.debug("mjpeg preview shutdown", exc_info=True)
        self._stop()

    def describe(self) -> str:
        host = "localhost" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"
