"""The KServe v2 gRPC adapter: ``inference.GRPCInferenceService`` on grpc.aio.

The service definition and messages are Triton's (``grpc_service.proto``, a superset of KServe's
``GRPCInferenceService``), compiled by the tritonclient package (``tritonclient.grpc.service_pb2*``), so
the server and tritonclient.grpc share one wire format. RPCs without a counterpart here (shared memory,
trace and log settings) answer UNIMPLEMENTED. Requests are parsed by the handlers here, so a malformed
message is INVALID_ARGUMENT (in ModelStreamInfer: that request's ``error_message``, the stream goes on).
Auth: ``authorization: Bearer TOKEN`` metadata on every RPC but ServerLive, ServerReady and ModelReady.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

from edge.serve.core import DataPlane
from edge.serve.served import InferRequest, Tensor
from edge.serve.status import RequestError
from edge.serve.tensors import DATATYPES, check_shape, element_count, from_raw, to_raw

SERVICE = "inference.GRPCInferenceService"
# typed contents field per datatype (when a client sends no raw_input_contents)
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


async def _abort(context: grpc.aio.ServicerContext, exc: RequestError) -> Any:
    await context.abort(getattr(grpc.StatusCode, exc.grpc_code), exc.message)


def _token(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


class Servicer(pbg.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def _guard(self, context: grpc.aio.ServicerContext) -> None:
        if not self.plane.authorized(_token(context)):
            await _abort(
                context, RequestError("unauthenticated", "missing or wrong bearer token (authorization metadata)")
            )

    # ---- health --------------------------------------------------------------------------------------
    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=self.plane.live())

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    # ---- metadata ------------------------------------------------------------------------------------
    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._guard(context)
        m = self.plane.server_metadata()
        return pb.ServerMetadataResponse(name=m["name"], version=m["version"], extensions=m["extensions"])

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._guard(context)
        try:
            m = self.plane.repository.get(request.name, request.version).metadata()
        except RequestError as exc:
            return await _abort(context, exc)
        meta = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=m["name"],
            versions=m["versions"],
            platform=m["platform"],
            inputs=[meta(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in m["inputs"]],
            outputs=[meta(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in m["outputs"]],
        )

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._guard(context)
        try:
            c = self.plane.repository.get(request.name, request.version).config_json()
        except RequestError as exc:
            return await _abort(context, exc)

        def tensor(cls: Any, t: dict[str, Any]) -> Any:
            return cls(name=t["name"], data_type=mc.DataType.Value(t["data_type"]), dims=t["dims"])

        config = mc.ModelConfig(
            name=c["name"],
            platform=c["platform"],
            max_batch_size=c["max_batch_size"],
            input=[tensor(mc.ModelInput, t) for t in c["input"]],
            output=[tensor(mc.ModelOutput, t) for t in c["output"]],
        )
        if c["dynamic_batching"] is not None:
            config.dynamic_batching.preferred_batch_size.extend(c["dynamic_batching"]["preferred_batch_size"])
            config.dynamic_batching.max_queue_delay_microseconds = c["dynamic_batching"]["max_queue_delay_microseconds"]
        return pb.ModelConfigResponse(config=config)

    async def ModelStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._guard(context)
        try:
            stats = self.plane.statistics(request.name, request.version)
        except RequestError as exc:
            return await _abort(context, exc)
        return pb.ModelStatisticsResponse(model_stats=[_model_statistics(m) for m in stats])

    # ---- repository ----------------------------------------------------------------------------------
    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._guard(context)
        rows = self.plane.repository.index()
        if request.ready:
            rows = [r for r in rows if r["state"] == "READY"]
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**r) for r in rows])

    async def RepositoryModelLoad(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._guard(context)
        try:
            await self.plane.repository.load(request.model_name)
        except RequestError as exc:
            return await _abort(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._guard(context)
        try:
            await self.plane.repository.unload(request.model_name)
        except RequestError as exc:
            return await _abort(context, exc)
        return pb.RepositoryModelUnloadResponse()

    # ---- inference -----------------------------------------------------------------------------------
    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._guard(context)
        try:
            req = self._request(request)
            resp = await self.plane.infer(req)
        except RequestError as exc:
            return await _abort(context, exc)
        return _response(resp)

    async def ModelStreamInfer(self, requests: Any, context: grpc.aio.ServicerContext) -> None:
        """One stream, many requests: each runs as soon as it arrives (so they batch with each other and with
        other clients) and its response, or its error in ``error_message``, is written when ready; a
        response carries its request's ``id``, as Triton's (responses may come out of order)."""
        await self._guard(context)
        write_lock = asyncio.Lock()
        tasks: set[asyncio.Task[None]] = set()

        async def answer(data: bytes) -> None:
            try:
                request = pb.ModelInferRequest()
                try:
                    request.ParseFromString(data)
                except Exception as exc:  # protobuf's DecodeError
                    raise RequestError("invalid", f"malformed inference.ModelInferRequest ({exc})") from None
                out = pb.ModelStreamInferResponse(
                    infer_response=_response(await self.plane.infer(self._request(request)))
                )
            except RequestError as exc:
                out = pb.ModelStreamInferResponse(error_message=exc.message)
            async with write_lock:
                await context.write(out)

        async for data in requests:
            task = asyncio.ensure_future(answer(data))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _request(self, request: Any) -> InferRequest:
        where = f"model {request.model_name}"
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise RequestError("invalid", f"{where}: {len(raw)} raw_input_contents for {len(request.inputs)} inputs")
        inputs = []
        for i, t in enumerate(request.inputs):
            tw = f"{where}: input {t.name!r}"
            if t.datatype not in DATATYPES:
                raise RequestError("invalid", f"{tw}: datatype {t.datatype!r} is not one of {', '.join(DATATYPES)}")
            shape = check_shape(list(t.shape), tw, self.plane.limits.max_tensor_elements)
            data = from_raw(t.datatype, shape, raw[i], tw) if raw else self._contents(t, shape, tw)
            inputs.append(Tensor(t.name, t.datatype, shape, data))
        wanted = [o.name for o in request.outputs] or None
        return InferRequest(request.model_name, request.model_version, request.id, inputs, wanted)

    @staticmethod
    def _contents(t: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
        field = CONTENTS.get(t.datatype)
        if field is None:
            raise RequestError("invalid", f"{where}: {t.datatype} needs raw_input_contents")
        values = list(getattr(t.contents, field))
        if len(values) != element_count(shape):
            raise RequestError(
                "invalid", f"{where}: shape {list(shape)} needs {element_count(shape)} values, got {len(values)}"
            )
        if t.datatype == "BYTES":
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            return arr.reshape(shape)
        return np.asarray(values, dtype=DATATYPES[t.datatype]).reshape(shape)


IMPLEMENTED = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelConfig",
    "ModelStatistics",
    "ModelInfer",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
)


def _handler(method: Any, request_cls: Any, response_cls: Any) -> Any:
    """A unary handler that parses the request itself: a malformed message is INVALID_ARGUMENT, not a crash."""

    async def call(data: bytes, context: grpc.aio.ServicerContext) -> Any:
        request = request_cls()
        try:
            request.ParseFromString(data)
        except Exception as exc:  # protobuf's DecodeError (its module ships no type hints)
            await _abort(context, RequestError("invalid", f"malformed {request_cls.DESCRIPTOR.full_name} ({exc})"))
        return await method(request, context)

    return grpc.unary_unary_rpc_method_handler(call, response_serializer=response_cls.SerializeToString)


def _response(resp: Any) -> Any:
    out = pb.ModelInferResponse(model_name=resp.model, model_version=resp.version, id=resp.id)
    for t in resp.outputs:
        out.outputs.add(name=t.name, datatype=t.datatype, shape=list(t.shape))
        out.raw_output_contents.append(to_raw(t.data))
    return out


def _model_statistics(m: dict[str, Any]) -> Any:
    def duration(d: dict[str, int]) -> Any:
        return pb.StatisticDuration(count=d["count"], ns=d["ns"])

    infer = m["inference_stats"]
    return pb.ModelStatistics(
        name=m["name"],
        version=m["version"],
        last_inference=m["last_inference"],
        inference_count=m["inference_count"],
        execution_count=m["execution_count"],
        inference_stats=pb.InferStatistics(**{k: duration(v) for k, v in infer.items()}),
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=b["batch_size"],
                compute_input=duration(b["compute_input"]),
                compute_infer=duration(b["compute_infer"]),
                compute_output=duration(b["compute_output"]),
            )
            for b in m["batch_stats"]
        ],
    )


def add_to_server(server: grpc.aio.Server, plane: DataPlane) -> None:
    """Register the implemented RPCs; the rest of Triton's service answers UNIMPLEMENTED."""
    servicer = Servicer(plane)
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for name in IMPLEMENTED:
        m = service.methods_by_name[name]
        handlers[name] = _handler(
            getattr(servicer, name), getattr(pb, m.input_type.name), getattr(pb, m.output_type.name)
        )
    stream = service.methods_by_name["ModelStreamInfer"]
    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        servicer.ModelStreamInfer, response_serializer=getattr(pb, stream.output_type.name).SerializeToString
    )  # requests arrive as bytes, parsed one by one: a malformed one is that request's error, not the stream's
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
