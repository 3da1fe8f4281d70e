"""The data plane every protocol adapter calls: auth, limits, in-flight accounting, metrics, the repository.

Adapters (``edge.serve.http``, ``edge.serve.grpc``) only translate wire formats into
:class:`~edge.serve.served.InferRequest` and errors into their status codes; every decision lives here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

from edge import __version__
from edge.errors import EdgeError, first_line
from edge.serve.metrics import ServeMetrics
from edge.serve.options import Limits
from edge.serve.repository import Repository
from edge.serve.served import InferRequest, InferResponse
from edge.serve.status import RequestError

log = logging.getLogger(__name__)

SERVER_NAME = "edge"
EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics"]  # as Triton names them


class DataPlane:
    def __init__(self, repository: Repository, metrics: ServeMetrics, limits: Limits, token: bytes | None) -> None:
        self.repository = repository
        self.metrics = metrics
        self.limits = limits
        self._token_digest = hashlib.sha256(token).digest() if token is not None else None
        self.accepting = True
        self.inflight = 0
        self.answered = 0  # inference requests taken and answered (a result or an error)
        self._quiet = asyncio.Event()
        self._quiet.set()

    # ---- auth ----------------------------------------------------------------------------------------
    @property
    def auth_required(self) -> bool:
        return self._token_digest is not None

    def authorized(self, header: str | None) -> bool:
        """``Authorization: Bearer TOKEN`` (HTTP header or gRPC metadata); constant time, never logged."""
        if self._token_digest is None:
            return True
        scheme, _, value = (header or "").strip().partition(" ")
        given = hashlib.sha256(value.strip().encode("utf-8", "replace")).digest()
        return hmac.compare_digest(given, self._token_digest) and scheme.lower() == "bearer"

    def require(self, header: str | None) -> None:
        if not self.authorized(header):
            raise RequestError("unauthenticated", "missing or wrong bearer token (Authorization: Bearer TOKEN)")

    # ---- health and metadata -------------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.accepting and self.repository.ready()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.repository.get(name, version)
        except RequestError:
            return False
        return self.accepting

    def statistics(self, name: str = "", version: str = "") -> list[dict[str, Any]]:
        """Triton's statistics extension: every served model, or NAME (a RequestError when it is not served)."""
        if name:
            served = [self.repository.get(name, version)]
        else:
            served = [e.served for e in self.repository.entries.values() if e.served is not None]
        return [self.metrics.statistics(m.name, m.version) for m in sorted(served, key=lambda m: m.name)]

    # ---- inference -----------------------------------------------------------------------------------
    async def infer(self, req: InferRequest) -> InferResponse:
        if not self.accepting:
            self.answered += 1
            raise RequestError("unavailable", "the server is shutting down; retry on another replica")
        start = time.perf_counter()
        deadline = time.monotonic() + self.limits.request_timeout_s
        self.inflight += 1
        self._quiet.clear()
        served = None
        try:
            served = self.repository.get(req.model, req.version)
            served.acquire()
            try:
                resp = await served.infer(req, deadline)
            finally:
                served.release()
        except RequestError as exc:
            self._count(req, served, False, start, exc.kind)
            raise
        except EdgeError as exc:  # e.g. an image the preprocessing refuses
            self._count(req, served, False, start, "invalid")
            raise RequestError("invalid", first_line(exc, type(exc).__name__)) from None
        except Exception as exc:
            log.exception("model %s: request failed", req.model)
            self._count(req, served, False, start, "internal")
            raise RequestError("internal", f"internal error: {first_line(exc, type(exc).__name__)}") from None
        finally:
            self.answered += 1
            self.inflight -= 1
            if self.inflight == 0:
                self._quiet.set()
        self._count(req, served, True, start)
        return resp

    def _count(self, req: InferRequest, served: Any, ok: bool, start: float, reason: str = "") -> None:
        if served is None:
            return  # no such model: Triton counts nothing either
        self.metrics.on_request(served.name, served.version, ok, (time.perf_counter() - start) * 1e6, reason.upper())

    # ---- shutdown ------------------------------------------------------------------------------------
    async def drain(self, timeout_s: float) -> bool:
        """Refuse new inferences and wait for the accepted ones; False when ``timeout_s`` ran out first."""
        self.accepting = False
        try:
            await asyncio.wait_for(self._quiet.wait(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("drain: %d request(s) still running after %.0f s", self.inflight, timeout_s)
            return False
        return True
