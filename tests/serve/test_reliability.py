"""Bad requests, broken clients and limits: each gets its error and the server serves the next request."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from edge.serve.options import Limits
from tests.serve.conftest import TOKEN, ServerThread, auth, gauth, make_repo, options

X = np.random.default_rng(5).random((1, 3, 32, 32), dtype=np.float32)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, bundles: dict[str, Path], token_path: Path) -> Iterator[ServerThread]:
    repo = make_repo(tmp_path_factory.mktemp("repo"), bundles, {"classifier": "max_queue: 1\n"})
    limits = Limits(max_request_bytes=1 << 20, max_tensor_elements=1 << 20, request_timeout_s=1.0, max_queue=64)
    s = ServerThread(options(repo, token_path, limits=limits)).start()
    yield s
    s.stop()


def still_serves(srv: ServerThread) -> None:
    h = th.InferenceServerClient(srv.http)
    inp = th.InferInput("input", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    assert h.infer("classifier", [inp], headers=auth()).as_numpy("probs").shape == (1, 4)
    g = tg.InferenceServerClient(srv.grpc)
    ginp = tg.InferInput("input", list(X.shape), "FP32")
    ginp.set_data_from_numpy(X)
    assert g.infer("classifier", [ginp], headers=gauth()).as_numpy("probs").shape == (1, 4)


def raw_http(srv: ServerThread, request: bytes, read: bool = True) -> bytes:
    host, port = srv.http.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        if not read:
            return b""
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def error_of(reply: bytes) -> str:
    return str(json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"])


CASES = {
    "malformed JSON": (b'{"inputs": [', "", 400, "not valid JSON"),
    "wrong dtype": (
        json.dumps(
            {"inputs": [{"name": "input", "datatype": "INT32", "shape": [1, 3, 32, 32], "data": [0] * 3072}]}
        ).encode(),
        "",
        400,
        "is FP32, the request sent INT32",
    ),
    "wrong shape": (
        json.dumps(
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 16, 32], "data": [0.0] * 1536}]}
        ).encode(),
        "",
        400,
        "has shape [-1, 3, 32, 32]",
    ),
    "data not matching the shape": (
        json.dumps(
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": [0.0] * 5}]}
        ).encode(),
        "",
        400,
        "needs 3072 values",
    ),
    "wrong byte size": (
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": [1, 3, 32, 32],
                        "parameters": {"binary_data_size": 12},
                    }
                ]
            }
        ).encode()
        + b"\0" * 12,
        "Inference-Header-Content-Length: {n}\r\n",
        400,
        "needs 12288 bytes of data, got 12",
    ),
    "a tensor far over the limit": (
        json.dumps(
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 100000, 100000], "data": []}]}
        ).encode(),
        "",
        413,
        "over the limit",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_http_requests_get_their_error(srv: ServerThread, case: str) -> None:
    body, extra, status, message = CASES[case]
    if "{n}" in extra:
        extra = extra.format(n=body.index(b"\0"))
    reply = raw_http(srv, post("/v2/models/classifier/infer", body, extra))
    assert status_of(reply) == status
    assert message in error_of(reply)
    still_serves(srv)


def test_body_over_the_size_limit_is_413(srv: ServerThread) -> None:
    body = b"x" * (2 << 20)
    reply = raw_http(srv, post("/v2/models/classifier/infer", body))
    assert status_of(reply) == 413
    still_serves(srv)


def test_malformed_protobuf_and_wrong_grpc_tensors(srv: ServerThread) -> None:
    channel = grpc.insecure_channel(srv.grpc)
    rpc = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes in, bytes out
    with pytest.raises(grpc.RpcError) as err:
        rpc(b"\xff\xff\xff\xff not a protobuf", metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in (err.value.details() or "")
    channel.close()
    g = tg.InferenceServerClient(srv.grpc)
    bad = tg.InferInput("input", [1, 3, 32, 32], "FP64")
    bad.set_data_from_numpy(X.astype(np.float64))
    with pytest.raises(InferenceServerException) as e:
        g.infer("classifier", [bad], headers=gauth())
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "is FP32" in e.value.message()
    huge = tg.InferInput("input", [1, 3, 100000, 100000], "FP32")
    huge._raw_content = b""  # the shape alone is over the limit: the server must refuse it before any data
    with pytest.raises(InferenceServerException) as e:
        g.infer("classifier", [huge], headers=gauth())
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    big = tg.InferInput("input", [400, 3, 32, 32], "FP32")  # a 4.9 MB message, over max_request (1 MiB)
    big.set_data_from_numpy(np.zeros((400, 3, 32, 32), np.float32))
    with pytest.raises(InferenceServerException) as e:
        g.infer("classifier", [big], headers=gauth())
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    still_serves(srv)


def test_half_a_request_times_out_and_others_are_served(srv: ServerThread) -> None:
    host, port = srv.http.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(post("/v2/models/classifier/infer", b"{" + b" " * 999)[:-900])  # Content-Length 1000, 100 sent
        still_serves(srv)  # while that client hangs
        reply = s.recv(65536)
    assert status_of(reply) == 504 and "did not arrive within 1 s" in error_of(reply)
    still_serves(srv)


def test_client_gone_mid_response(srv: ServerThread) -> None:
    """A big response (the detector's outputs for a 256x256 input as JSON, about 1 MB), the client reads 100 bytes
    and resets the connection."""
    x = np.zeros((1, 3, 256, 256), np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
        }
    ).encode()
    host, port = srv.http.split(":")
    for _ in range(3):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = header + x.tobytes()
        extra = f"Inference-Header-Content-Length: {len(header)}\r\n"
        req = post("/v2/models/face/infer", body, extra)
        s.sendall(req)
        assert s.recv(100)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not a clean close
        s.close()
    still_serves(srv)


def test_full_queue_is_429(srv: ServerThread) -> None:
    """max_queue: 1 for the classifier: while one request waits, the next ones are refused with 429."""

    async def go() -> list[int]:
        import aiohttp

        body = json.dumps(
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": X.reshape(-1).tolist()}]}
        )
        async with aiohttp.ClientSession() as session:

            async def one() -> int:
                async with session.post(
                    f"http://{srv.http}/v2/models/classifier/infer", data=body, headers=auth()
                ) as r:
                    await r.read()
                    return r.status

            return list(await asyncio.gather(*(one() for _ in range(24))))

    statuses = asyncio.run(go())
    assert set(statuses) <= {200, 429}
    assert 200 in statuses and 429 in statuses
    still_serves(srv)


def test_request_timeout_is_504_and_deadline_exceeded(
    tmp_path: Path, bundles: dict[str, Path], token_path: Path
) -> None:
    """A request held in the queue (waiting 1.5 s for a fuller batch) past the 0.3 s request timeout."""
    repo = make_repo(
        tmp_path, bundles, {"classifier": "max_batch: 8\npreferred_batch: [8]\nmax_queue_delay_us: 1500000\n"}
    )
    limits = Limits(max_request_bytes=1 << 20, max_tensor_elements=1 << 20, request_timeout_s=0.3, max_queue=64)
    s = ServerThread(options(repo, token_path, limits=limits)).start()
    try:
        h = th.InferenceServerClient(s.http)
        inp = th.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        with pytest.raises(InferenceServerException) as err:
            h.infer("classifier", [inp], headers=auth())
        assert err.value.status() == "504" and "timed out" in err.value.message()
        g = tg.InferenceServerClient(s.grpc)
        ginp = tg.InferInput("input", list(X.shape), "FP32")
        ginp.set_data_from_numpy(X)
        with pytest.raises(InferenceServerException) as err:
            g.infer("classifier", [ginp], headers=gauth())
        assert err.value.status() == "StatusCode.DEADLINE_EXCEEDED"
        m = s.server.metrics
        assert m is not None and m.value("nv_inference_request_failure", "classifier", "1") == 2
    finally:
        s.stop()
