"""The KServe v2 REST adapter on aiohttp: routes, JSON and binary tensors, ``POST /predict``, ``/metrics``.

Only translation lives here; :class:`~edge.serve.core.DataPlane` decides. Errors are Triton's body,
``{"error": "..."}``, with the status of :mod:`edge.serve.status`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from aiohttp import web

from edge.serve.core import DataPlane
from edge.serve.metrics import CONTENT_TYPE
from edge.serve.served import InferRequest, InferResponse, Tensor
from edge.serve.status import RequestError
from edge.serve.tensors import check_shape, datatype_of, from_json, from_raw, to_json_data, to_raw

log = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"
OPEN = {"/v2/health/live", "/v2/health/ready"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: RequestError) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.kind == "unauthenticated" else None
    return web.json_response({"error": exc.message}, status=exc.http_status, headers=headers)


def make_app(plane: DataPlane) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path not in OPEN and not request.path.endswith("/ready"):
                plane.require(request.headers.get("Authorization"))
            return await handler(request)
        except RequestError as exc:
            return error_response(exc)
        except web.HTTPRequestEntityTooLarge:
            return error_response(
                RequestError("too_large", f"request body over the limit of {plane.limits.max_request_bytes} bytes")
            )

    app = web.Application(client_max_size=plane.limits.max_request_bytes, middlewares=[guard])
    h = Routes(plane)
    r = app.router
    r.add_get("/v2/health/live", h.live)
    r.add_get("/v2/health/ready", h.ready)
    r.add_get("/v2", h.server_metadata)
    r.add_get("/metrics", h.metrics)
    r.add_get("/v2/models/stats", h.stats)  # before /v2/models/{name}
    r.add_get("/v2/models/{name}/stats", h.stats)
    r.add_get("/v2/models/{name}/versions/{version}/stats", h.stats)
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        r.add_get(prefix, h.model_metadata)
        r.add_get(prefix + "/ready", h.model_ready)
        r.add_get(prefix + "/config", h.model_config)
        r.add_post(prefix + "/infer", h.infer)
    r.add_post("/v2/repository/index", h.index)
    r.add_post("/v2/repository/models/{name}/load", h.load)
    r.add_post("/v2/repository/models/{name}/unload", h.unload)
    r.add_post("/predict", h.predict)
    return app


class Routes:
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.plane.live() else 503)

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.plane.ready() else 503)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response(self.plane.server_metadata())

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.plane.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def model_metadata(self, request: web.Request) -> web.Response:
        served = self.plane.repository.get(request.match_info["name"], request.match_info.get("version", ""))
        return web.json_response({**served.metadata(), "edge": served.extra()})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "model_stats": self.plane.statistics(
                    request.match_info.get("name", ""), request.match_info.get("version", "")
                )
            }
        )

    async def model_ready(self, request: web.Request) -> web.Response:
        ok = self.plane.model_ready(request.match_info["name"], request.match_info.get("version", ""))
        return web.Response(status=200 if ok else 503)

    async def model_config(self, request: web.Request) -> web.Response:
        served = self.plane.repository.get(request.match_info["name"], request.match_info.get("version", ""))
        return web.json_response(served.config_json())

    async def index(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        ready_only = False
        if body.strip():
            doc = _json(body)
            ready_only = bool(isinstance(doc, dict) and doc.get("ready"))
        rows = self.plane.repository.index()
        if ready_only:
            rows = [x for x in rows if x["state"] == "READY"]
        return web.json_response(rows)

    async def load(self, request: web.Request) -> web.Response:
        await self.plane.repository.load(request.match_info["name"])
        return web.Response(status=200)

    async def unload(self, request: web.Request) -> web.Response:
        await self.plane.repository.unload(request.match_info["name"])
        return web.Response(status=200)

    async def _body(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > self.plane.limits.max_request_bytes:
            raise RequestError(
                "too_large",
                f"request body of {length} bytes is over the limit of {self.plane.limits.max_request_bytes}",
            )
        try:
            return await asyncio.wait_for(request.read(), self.plane.limits.request_timeout_s)
        except asyncio.TimeoutError:
            raise RequestError(
                "timeout", f"the request body did not arrive within {self.plane.limits.request_timeout_s:g} s"
            ) from None

    # ---- inference -----------------------------------------------------------------------------------
    async def infer(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        header_text = request.headers.get(HEADER_LENGTH)
        req, binary_out = parse_infer(
            body, header_text, request.match_info["name"], request.match_info.get("version", ""), self.plane
        )
        resp = await self.plane.infer(req)
        # Responses are never compressed: aiohttp clients send Accept-Encoding: gzip by default, and deflating
        # tensors costs more CPU than loopback or a LAN saves (tritonclient reads uncompressed answers too).
        return encode_infer(resp, binary_out)

    async def predict(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        doc = _json(body)
        if not isinstance(doc, dict) or "input" not in doc:
            raise RequestError("invalid", 'POST /predict: expected {"input": [[...]]} (a nested list of numbers)')
        name = doc.get("model")
        models = [e for e in self.plane.repository.entries]
        if name is None:
            if len(models) != 1:
                raise RequestError(
                    "invalid", f'POST /predict: {len(models)} models are served; add "model": one of {sorted(models)}'
                )
            name = models[0]
        served = self.plane.repository.get(str(name))
        if len(served.inputs) != 1:
            raise RequestError(
                "invalid", f"POST /predict: model {name} has {len(served.inputs)} inputs; use /v2/models/{name}/infer"
            )
        spec = served.inputs[0]
        datatype = datatype_of(spec.dtype)
        try:
            arr = np.asarray(doc["input"])
        except (ValueError, TypeError):
            raise RequestError("invalid", "POST /predict: input is not a regular nested list of numbers") from None
        shape = check_shape(arr.shape, "POST /predict: input", self.plane.limits.max_tensor_elements)
        tensor = Tensor(spec.name, datatype, shape, from_json(datatype, shape, arr.tolist(), "POST /predict: input"))
        resp = await self.plane.infer(InferRequest(str(name), "", "", [tensor], None))
        return web.json_response(
            {"model": resp.model, "version": resp.version, "outputs": {t.name: t.data.tolist() for t in resp.outputs}}
        )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError("invalid", f"the request is not valid JSON ({exc})") from None


def parse_infer(
    body: bytes, header_text: str | None, model: str, version: str, plane: DataPlane
) -> tuple[InferRequest, dict[str, bool]]:
    """The request and, per output name, whether to answer in binary (``""``: the default for all)."""
    where = f"model {model}"
    if header_text is not None:
        try:
            n = int(header_text)
        except ValueError:
            n = -1
        if not 0 <= n <= len(body):
            raise RequestError("invalid", f"{HEADER_LENGTH}: {header_text!r} is not a length within the body")
        doc, binary = _json(body[:n]), memoryview(body)[n:]
    else:
        doc, binary = _json(body), memoryview(b"")
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise RequestError("invalid", f'{where}: the request needs "inputs": a list of tensors')
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError("invalid", f"{where}: parameters must be an object")
    inputs = []
    offset = 0
    for i, t in enumerate(doc["inputs"]):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not isinstance(t.get("datatype"), str):
            raise RequestError("invalid", f'{where}: inputs[{i}] needs "name", "datatype", "shape" and data')
        tw = f"{where}: input {t['name']!r}"
        shape = check_shape(
            t.get("shape", []) if isinstance(t.get("shape"), list) else [None], tw, plane.limits.max_tensor_elements
        )
        tparams = t.get("parameters") or {}
        size = tparams.get("binary_data_size") if isinstance(tparams, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise RequestError("invalid", f"{tw}: binary_data_size {size!r} runs past the request's binary data")
            data = from_raw(t["datatype"], shape, binary[offset : offset + size], tw)
            offset += size
        elif "data" in t:
            data = from_json(t["datatype"], shape, t["data"], tw)
        else:
            raise RequestError("invalid", f'{tw}: no "data" and no binary_data_size')
        inputs.append(Tensor(t["name"], t["datatype"], shape, data))
    if offset != len(binary):
        raise RequestError("invalid", f"{where}: {len(binary) - offset} bytes of binary data belong to no input")
    binary_out: dict[str, bool] = {"": bool(params.get("binary_data_output", False))}
    wanted: list[str] | None = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise RequestError("invalid", f"{where}: outputs must be a list")
        wanted = []
        for o in doc["outputs"]:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise RequestError("invalid", f'{where}: every requested output needs a "name"')
            wanted.append(o["name"])
            op = o.get("parameters") or {}
            if isinstance(op, dict) and "binary_data" in op:
                binary_out[o["name"]] = bool(op["binary_data"])
    req_id = doc.get("id", "")
    return InferRequest(model, version, str(req_id) if req_id is not None else "", inputs, wanted), binary_out


def encode_infer(resp: InferResponse, binary_out: dict[str, bool]) -> web.Response:
    outputs = []
    chunks: list[bytes] = []
    for t in resp.outputs:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if binary_out.get(t.name, binary_out[""]):
            raw = to_raw(t.data)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = to_json_data(t.data)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": resp.model, "model_version": resp.version, "outputs": outputs}
    if resp.id:
        doc["id"] = resp.id
    header = json.dumps(doc).encode()
    if not chunks:
        return web.Response(body=header, content_type="application/json")
    return web.Response(
        body=b"".join([header, *chunks]),
        headers={HEADER_LENGTH: str(len(header)), "Content-Type": "application/octet-stream"},
    )
