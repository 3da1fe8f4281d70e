"""The server's life: load and warm every model, open the listeners, poll the repository, drain on stop.

Stop order (SIGTERM, or :meth:`Server.request_stop`): readiness turns false, the listeners stop taking
new connections and RPCs, every request already accepted is answered (within ``drain_timeout``), then
the models are drained and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import threading
from collections.abc import Callable
from typing import Any

from edge.errors import ServiceError
from edge.serve.core import DataPlane
from edge.serve.metrics import ServeMetrics
from edge.serve.options import ServeOptions, read_token
from edge.serve.repository import Loader, Repository

log = logging.getLogger(__name__)

GRPC_MAX_SEND = 1 << 30
READ_BUFSIZE = (
    4 << 20
)  # aiohttp reads request bodies in chunks this large (default 64 KiB: many loop turns for a tensor)


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Server:
    """``await start()`` binds the listeners (live at once, not ready), loads and warms every model, and returns
    once all are ready."""

    def __init__(self, options: ServeOptions, loader: Loader | None = None) -> None:
        self.options = options
        self.loader = loader
        self.metrics: ServeMetrics | None = None
        self.plane: DataPlane | None = None
        self.repository: Repository | None = None
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self._runner: Any = None
        self._site: Any = None
        self._grpc: Any = None
        self._poller: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self.listening = threading.Event()  # set once the ports are bound (models may still be loading)

    def _ssl(self) -> ssl.SSLContext | None:
        o = self.options
        if o.tls_cert is None or o.tls_key is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(str(o.tls_cert), str(o.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ServiceError(
                f"{o.tls_cert} / {o.tls_key}: cannot load the TLS certificate and key ({exc}); "
                "give a PEM certificate and its unencrypted PEM key"
            ) from None
        return ctx

    async def start(self) -> None:
        o = self.options
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        token = read_token(o)
        tls = self._ssl()
        self.metrics = ServeMetrics()
        repository = Repository(o.repository, self.metrics, o.limits, self.loader)
        self.metrics.pending_source = repository.pending
        self.repository = repository
        self.plane = DataPlane(repository, self.metrics, o.limits, token)
        try:
            # listen first: live at once, ready (200 on /v2/health/ready) once every model is loaded and warm
            if o.http is not None:
                await self._start_http(o.http, tls)
            if o.grpc is not None:
                await self._start_grpc(o.grpc, o.tls_cert, o.tls_key)
            self.listening.set()
            errors = await repository.load_all()
            if errors:
                raise ServiceError("; ".join(errors))
        except BaseException:
            await self.stop()
            raise
        if o.poll_s > 0:
            self._poller = asyncio.ensure_future(self._poll_loop(o.poll_s))

    async def _start_http(self, listen: tuple[str, int], tls: ssl.SSLContext | None) -> None:
        from aiohttp import web

        from edge.serve.http import make_app

        assert self.plane is not None
        app = make_app(self.plane)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=self.options.drain_timeout_s,
            read_bufsize=READ_BUFSIZE,
        )
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, listen[0], listen[1], ssl_context=tls, backlog=1024)
        try:
            await self._site.start()
        except OSError as exc:
            raise ServiceError(
                f"--http {_fmt(*listen)}: cannot listen ({exc.strerror or exc}); pick another port"
            ) from None
        sock = self._site._server.sockets[0]  # the bound port when 0 was asked for
        self.http_port = int(sock.getsockname()[1])
        log.info("HTTP (KServe v2 REST%s) on %s", ", TLS" if tls else "", _fmt(listen[0], self.http_port))

    async def _start_grpc(self, listen: tuple[str, int], cert: Any, key: Any) -> None:
        try:
            import grpc

            from edge.serve.grpc import add_to_server
        except ImportError as exc:
            raise ServiceError(
                f"--grpc: the gRPC adapter needs the serve extra ({exc.name or exc} is not installed): "
                "pip install 'edge-kit[serve]', or serve HTTP only with --grpc off"
            ) from None

        assert self.plane is not None
        limit = self.options.limits.max_request_bytes
        self._grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", GRPC_MAX_SEND),
                ("grpc.so_reuseport", 0),
            ]
        )
        add_to_server(self._grpc, self.plane)
        address = _fmt(*listen)
        try:
            if cert is not None:
                creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
                port = self._grpc.add_secure_port(address, creds)
            else:
                port = self._grpc.add_insecure_port(address)
        except (RuntimeError, OSError) as exc:
            raise ServiceError(f"--grpc {address}: cannot listen ({exc}); pick another port") from None
        if not port:
            raise ServiceError(f"--grpc {address}: cannot listen (the port is taken?); pick another port")
        await self._grpc.start()
        self.grpc_port = port
        log.info("gRPC (KServe v2%s) on %s", ", TLS" if cert else "", _fmt(listen[0], port))

    async def _poll_loop(self, every: float) -> None:
        assert self.repository is not None
        while True:
            await asyncio.sleep(every)  # a timer, not synchronisation
            try:
                await self.repository.poll()
            except Exception:  # a scan must never end the server
                log.exception("repository poll failed")

    # ---- stopping ------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the server to drain and stop (thread-safe; :meth:`wait` returns afterwards)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def wait(self) -> None:
        assert self._stop is not None
        await self._stop.wait()

    async def drain(self) -> bool:
        """Stop taking new connections and RPCs, answer every accepted request; False if the timeout ran out."""
        grace = self.options.drain_timeout_s
        if self._poller is not None:
            self._poller.cancel()
        tasks = []
        if self._site is not None:
            tasks.append(asyncio.ensure_future(self._site.stop()))
        if self._grpc is not None:
            tasks.append(asyncio.ensure_future(self._grpc.stop(grace)))
        done = True
        if self.plane is not None:
            done = await self.plane.drain(grace)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return done

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poller
        if self._runner is not None:
            await self._runner.cleanup()
        if self._grpc is not None:
            await self._grpc.stop(0)
        if self.repository is not None:
            await self.repository.close()


def run_server(
    options: ServeOptions,
    *,
    on_ready: Callable[[Server], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    tick_s: float = 1.0,
    install_signals: bool = True,
    loader: Loader | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT (or ``request_stop``), then drain; 0 when every accepted request was answered."""

    async def main() -> int:
        server = Server(options, loader)
        await server.start()
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, server.request_stop)
        ticker = None
        if on_tick is not None:

            async def tick() -> None:
                while True:
                    on_tick()
                    await asyncio.sleep(tick_s)  # a heartbeat timer, not synchronisation

            ticker = asyncio.ensure_future(tick())
        try:
            if on_ready is not None:
                on_ready(server)
            await server.wait()
            log.info("stopping: draining accepted requests")
            if on_stopping is not None:
                on_stopping()
            clean = await server.drain()
        finally:
            if ticker is not None:
                ticker.cancel()
            await server.stop()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        answered = server.plane.answered if server.plane is not None else 0
        log.info("stopped: %d inference request(s) answered%s", answered, "" if clean else ", drain timed out")
        return 0 if clean else 1

    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (the ``serve`` extra on Linux), else asyncio's; EDGE_SERVE_LOOP=asyncio
    forces asyncio's (for comparisons)."""
    if os.environ.get("EDGE_SERVE_LOOP") != "asyncio":
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()
