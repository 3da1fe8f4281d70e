"""The HTTP API of a running pipeline, on aiohttp (the kit's one HTTP server stack).

| route | auth | answers |
|---|---|---|
| ``GET /healthz`` | none | ``200 ok``: the process serves requests |
| ``GET /readyz`` | bearer | ``200`` once the pipeline runs, ``503`` while starting or stopping |
| ``GET /metrics`` | bearer | Prometheus text: fps, per-stage latency histograms, drops, reconnects, telemetry |
| ``GET /v1/status`` | bearer | JSON: state, model, pipeline counters, source states, telemetry |
| ``POST /v1/infer`` | bearer | an image (raw body or multipart ``file``) -> the JSON of ``edge infer --json`` |
| ``GET /v1/stream`` | bearer | MJPEG (``multipart/x-mixed-replace``) of the annotated frames |

The bearer token is read once from a file (``$CREDENTIALS_DIRECTORY/http-token`` when systemd passes it
with ``LoadCredential=``, else ``http.token_file``) and compared in constant time; it is never logged.
Every failure is a JSON ``{"error": ...}`` with a status code; no request ever gets a traceback.

The pipeline is synchronous, so the server runs its own asyncio loop on one thread (``edge-http``);
inference and the blocking MJPEG frame wait run on worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from edge.errors import EdgeError, ServiceError
from edge.observer import FrameResult, PipelineControl, PipelineStats
from edge.service.aio import LoopThread, bind_socket
from edge.service.api import MAX_STREAMS, Api
from edge.service.config import HttpConfig, read_token_file, token_path
from edge.service.metrics import CONTENT_TYPE, Metrics, MetricsSource, Telemetry

log = logging.getLogger(__name__)

BOUNDARY = "edgeframe"
# An oversized upload up to this is read and dropped after the 413 (so the client reads its answer instead of
# a reset, and the connection is kept); beyond it, the connection closes without reading the body.
DRAIN_MAX_BYTES = 64 << 20
BODY_TIMEOUT_S = 30.0  # a client may stall an upload this long before its request is dropped
INFER_THREADS = 8  # worker threads for uploads (decoding overlaps; predict is serialised on the model lock)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def read_token(config: HttpConfig, environ: dict[str, str] | None = None) -> bytes | None:
    """The bearer token (None with ``auth: none``); a ServiceError names the file, never its content."""
    if config.auth == "none":
        return None
    path = token_path(config.token_file, environ)
    if path is None:
        raise ServiceError(
            "http.token_file: not set; the HTTP API needs a bearer token file (or auth: none on loopback)"
        )
    return read_token_file(path, f"http.token_file {path}")


def json_response(code: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=code, body=json.dumps(body).encode() + b"\n", content_type="application/json", headers=headers
    )


def listen_socket(host: str, port: int, where: str) -> socket.socket:
    """A bound, listening TCP socket (IPv6 when the host has a colon); a ServiceError when the port is taken."""
    try:
        return bind_socket(host, port)
    except OSError as exc:
        raise ServiceError(
            f"{where}: cannot listen ({exc.strerror or exc}); pick a free port or stop the process that holds it"
        ) from None


class _Routes:
    """The aiohttp handlers of one :class:`Api`."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.infer_pool = ThreadPoolExecutor(INFER_THREADS, thread_name_prefix="edge-http-infer")
        self.stream_pool = ThreadPoolExecutor(MAX_STREAMS, thread_name_prefix="edge-http-stream")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=self.api.config.max_upload_bytes)
        app.router.add_get("/healthz", self.healthz, allow_head=False)
        app.router.add_get("/readyz", self.readyz, allow_head=False)
        app.router.add_get("/metrics", self.metrics, allow_head=False)
        app.router.add_get("/v1/status", self.status, allow_head=False)
        app.router.add_post("/v1/infer", self.infer, expect_handler=self.expect)
        app.router.add_get("/v1/stream", self.stream, allow_head=False)
        return app

    # -- around every request ------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        api = self.api
        method, route = request.method, request.path
        error = request.match_info.http_exception
        label = "other" if isinstance(error, web.HTTPNotFound) else route
        code = 500
        try:
            if isinstance(error, web.HTTPMethodNotAllowed):
                allow = ", ".join(sorted(error.allowed_methods))
                resp: web.StreamResponse = json_response(
                    405, {"error": f"{method} is not allowed on {route}"}, {"Allow": allow}
                )
            elif error is not None:
                resp = json_response(
                    404, {"error": f"no route {route}; see /v1/status, /v1/infer, /v1/stream, /metrics"}
                )
            elif route != "/healthz" and not api.authorized(request.headers.get("Authorization")):
                resp = self.unauthorized()
            else:
                resp = await handler(request)
            code = resp.status
        except asyncio.CancelledError:
            code = 499  # the client went away (aiohttp cancelled the handler)
            raise
        except (ConnectionError, aiohttp.ClientPayloadError, HttpProcessingError) as exc:
            # The client went away, or its upload broke off: nobody to answer, nothing to log but a line.
            code = 499
            log.debug("HTTP %s %s: the client went away (%s)", method, route, type(exc).__name__)
            resp = web.Response(status=400)
            resp.force_close()
        except web.HTTPException as exc:  # raised by aiohttp itself, e.g. a body over client_max_size
            resp = json_response(exc.status, {"error": exc.reason})
            resp.force_close()
        except Exception:
            log.exception("HTTP %s %s failed", method, route)
            resp = json_response(500, {"error": "internal error; see the service log"})
            resp.force_close()
        finally:
            api.metrics.on_request(method, label, code)
            if log.isEnabledFor(logging.DEBUG):
                # Method, path without its query, status: never headers or query strings, so never a token.
                log.debug("%s %s %s -> %s", request.remote, method, route, code)
        if code >= 400 and not request.content.is_eof():
            await _drain(request)
            if not request.content.is_eof() and not resp.prepared:
                resp.force_close()  # say so: the unread body cannot be told apart from the next request
        if not resp.prepared:
            resp.headers["Cache-Control"] = "no-store"
            resp.headers["Server"] = "edge"
        return resp

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse an unauthorised or oversized upload before the client sends it."""
        resp: web.StreamResponse | None = None
        if not self.api.authorized(request.headers.get("Authorization")):
            resp = self.unauthorized()
        else:
            length = request.content_length
            if length is not None and length > self.api.config.max_upload_bytes:
                resp = self.too_large(length)
        if resp is None:
            await _continue(request)
            return None
        resp.force_close()  # the body is never sent: the connection cannot carry another request
        resp.headers["Cache-Control"] = "no-store"
        self.api.metrics.on_request(request.method, request.path, resp.status)
        return resp

    def unauthorized(self) -> web.Response:
        headers = {"WWW-Authenticate": 'Bearer realm="edge"'}
        return json_response(401, {"error": "missing or invalid bearer token (Authorization: Bearer TOKEN)"}, headers)

    def too_large(self, length: int) -> web.Response:
        limit = f"{self.api.config.max_upload_mb:g} MB"
        return json_response(413, {"error": f"upload of {length} bytes is over the {limit} limit (http.max_upload_mb)"})

    # -- routes -------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n", content_type="text/plain")

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        state = self.api.state
        return json_response(200 if state == "running" else 503, {"ready": state == "running", "state": state})

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        resp = web.Response(body=self.api.metrics.render())
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    async def status(self, request: web.Request) -> web.StreamResponse:
        return json_response(200, self.api.status())

    async def infer(self, request: web.Request) -> web.StreamResponse:
        api = self.api
        if "Transfer-Encoding" in request.headers:
            resp = json_response(
                411, {"error": "send the image with a Content-Length (chunked uploads are not accepted)"}
            )
            resp.force_close()
            return resp
        length = request.content_length
        if length is None:
            return json_response(411, {"error": "Content-Length is required"})
        if length > api.config.max_upload_bytes:
            resp = self.too_large(length)
            return resp  # the middleware drains it when it is at most DRAIN_MAX_BYTES, else the connection closes
        try:
            body = await asyncio.wait_for(request.read(), BODY_TIMEOUT_S)
        except asyncio.TimeoutError:
            resp = json_response(408, {"error": f"upload stalled for {BODY_TIMEOUT_S:g} s; send the whole body"})
            resp.force_close()
            return resp
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            code, payload, timings = await loop.run_in_executor(
                self.infer_pool, api.infer, body, request.headers.get("Content-Type", "")
            )
        except EdgeError as exc:
            log.warning("POST /v1/infer: %s", exc)
            return json_response(500, {"error": f"inference failed: {exc}"})
        headers = {}
        if code == 200:
            total = (time.perf_counter() - started) * 1000.0
            api.metrics.infer_ms.observe(total)
            stages = [f"{k};dur={v:.3f}" for k, v in timings.items()] + [f"total;dur={total:.3f}"]
            headers["Server-Timing"] = ", ".join(stages)
        return json_response(code, payload, headers)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        api = self.api
        if not api.stream_slots.acquire(blocking=False):
            return json_response(503, {"error": "too many /v1/stream clients; try again later"})
        frames: Iterator[bytes] = api.jpeg_frames()
        loop = asyncio.get_running_loop()
        try:
            resp = web.StreamResponse(
                headers={
                    "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                    "Cache-Control": "no-store",
                    "Server": "edge",
                }
            )
            resp.force_close()
            await resp.prepare(request)
            try:
                while True:
                    jpeg = await loop.run_in_executor(self.stream_pool, next, frames, None)
                    if jpeg is None:
                        break
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                    await resp.write(head.encode() + jpeg + b"\r\n")
                await resp.write(f"--{BOUNDARY}--\r\n".encode())
            except ConnectionError:  # the viewer went away: the normal end of a stream
                log.debug("GET /v1/stream: the viewer went away")
            return resp
        finally:
            frames.close()  # type: ignore[attr-defined]  # a generator, suspended between frames
            api.stream_slots.release()

    def close(self) -> None:
        self.infer_pool.shutdown(wait=False)
        self.stream_pool.shutdown(wait=False)


async def _drain(request: web.Request) -> None:
    """Read and drop the unread body of a refused request, so the client gets its answer instead of a reset
    and the connection can carry the next request. Bodies without a Content-Length, larger than
    DRAIN_MAX_BYTES or stalled are not read: the server's ``lingering_time=0`` then closes the connection."""
    length = request.content_length
    if "Transfer-Encoding" in request.headers or length is None or length > DRAIN_MAX_BYTES:
        return
    try:
        await asyncio.wait_for(_discard(request), BODY_TIMEOUT_S)
    except (asyncio.TimeoutError, ConnectionError, aiohttp.ClientError):
        pass


async def _discard(request: web.Request) -> None:
    while await request.content.readany():
        pass


async def _continue(request: web.Request) -> None:
    if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0


class HttpObserver:
    """Serves the API for one pipeline from construction until :meth:`close`; a pipeline observer."""

    def __init__(
        self,
        config: HttpConfig,
        model: Any,
        *,
        telemetry: Telemetry | None = None,
        model_lock: threading.Lock | None = None,
        environ: dict[str, str] | None = None,
        metrics: tuple[MetricsSource, ...] | list[MetricsSource] = (),
    ) -> None:
        self.config = config
        self.api = Api(config, model, read_token(config, environ), Metrics(telemetry), model_lock)
        for source in metrics:
            self.api.metrics.register(source)
        sock = listen_socket(config.host, config.port, f"http.listen {config.listen}")
        self._routes = _Routes(self.api)
        self._loop: LoopThread | None = LoopThread("edge-http")
        try:
            self._runner = self._loop.call(self._start(sock), timeout=30)
        except BaseException:
            sock.close()
            self._stop_loop()
            raise
        self._port = int(sock.getsockname()[1])
        log.info("HTTP API on http://%s (auth: %s)", self.listen, config.auth)

    async def _start(self, sock: socket.socket) -> web.AppRunner:
        # lingering_time=0: a body the handlers leave unread closes the connection (see _drain).
        runner = web.AppRunner(
            self._routes.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0, lingering_time=0
        )
        await runner.setup()
        await web.SockSite(runner, sock).start()
        return runner

    @property
    def port(self) -> int:
        return self._port

    @property
    def listen(self) -> str:
        host = self.config.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def on_start(self, stats: PipelineStats, control: PipelineControl) -> None:
        self.api.set_state("running", stats)

    def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
        self.api.on_frame(frame, stats)

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        self.api.metrics.on_event(kind)

    def on_stop(self, stats: PipelineStats) -> None:
        self.api.set_state("stopping", stats)

    def _stop_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()
        self._routes.close()

    def close(self) -> None:
        if self._loop is None:
            return
        self.api.set_state("stopped", None)  # ends every /v1/stream
        try:
            self._loop.call(self._runner.cleanup(), timeout=10)
        except Exception:
            log.debug("HTTP server shutdown", exc_info=True)
        self._stop_loop()
        closer = getattr(self.api.metrics.telemetry, "close", None)
        if callable(closer):
            closer()
