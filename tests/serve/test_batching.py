"""Dynamic batching across concurrent requests, with real async Triton clients against a real server."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.grpc.aio as tga
import tritonclient.http as th
import tritonclient.http.aio as tha

from tests.serve.conftest import ServerThread, auth, gauth, make_repo, options, reference


async def _concurrent_http(url: str, xs: list[np.ndarray]) -> list[np.ndarray]:
    client = tha.InferenceServerClient(url, conn_limit=len(xs))
    try:

        async def one(x: np.ndarray) -> np.ndarray:
            inp = tha.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            res = await client.infer("classifier", [inp], headers=auth())
            return res.as_numpy("probs")

        return list(await asyncio.gather(*(one(x) for x in xs)))
    finally:
        await client.close()


async def _concurrent_grpc(url: str, xs: list[np.ndarray]) -> list[np.ndarray]:
    client = tga.InferenceServerClient(url)
    try:

        async def one(x: np.ndarray) -> np.ndarray:
            inp = tga.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            res = await client.infer("classifier", [inp], headers=gauth())
            return res.as_numpy("probs")

        return list(await asyncio.gather(*(one(x) for x in xs)))
    finally:
        await client.close()


def _counts(srv: ServerThread) -> tuple[float, float, float]:
    m = srv.server.metrics
    assert m is not None
    return (
        m.value("nv_inference_request_success", "classifier", "1"),
        m.value("nv_inference_exec_count", "classifier", "1"),
        m.value("nv_inference_count", "classifier", "1"),
    )


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_concurrent_requests_are_batched_and_split_back(
    tmp_path: Path, bundles: dict[str, Path], token_path: Path, protocol: str
) -> None:
    # the delay is long enough for all 16 requests to arrive: they form batches of up to 8 (preferred)
    repo = make_repo(
        tmp_path, bundles, {"classifier": "max_batch: 8\npreferred_batch: [8]\nmax_queue_delay_us: 2000000\n"}
    )
    srv = ServerThread(options(repo, token_path)).start()
    try:
        rng = np.random.default_rng(7)
        xs = [rng.random((1, 3, 32, 32), dtype=np.float32) for _ in range(16)]
        run = _concurrent_http(srv.http, xs) if protocol == "http" else _concurrent_grpc(srv.grpc, xs)
        outs = asyncio.run(run)
        ref = reference(bundles["classifier"], {"input": np.concatenate(xs)})["probs"]
        for i, out in enumerate(outs):  # each request got its own row back
            np.testing.assert_allclose(out, ref[i : i + 1], rtol=1e-5, atol=1e-6)
        success, execs, items = _counts(srv)
        assert (success, items) == (16, 16)
        assert execs == 2  # two full preferred batches of 8, not 16 executions
        # Triton's statistics extension says the same through both real clients
        hs = th.InferenceServerClient(srv.http).get_inference_statistics("classifier", headers=auth())["model_stats"][0]
        assert (hs["inference_count"], hs["execution_count"]) == (16, 2)
        assert hs["inference_stats"]["success"]["count"] == 16 and hs["inference_stats"]["queue"]["count"] == 16
        assert [(b["batch_size"], b["compute_infer"]["count"]) for b in hs["batch_stats"]] == [(8, 2)]
        gs = tg.InferenceServerClient(srv.grpc).get_inference_statistics(headers=gauth()).model_stats
        assert {m.name: (m.inference_count, m.execution_count) for m in gs} == {"classifier": (16, 2), "face": (0, 0)}
    finally:
        srv.stop()


def test_without_dynamic_batching_every_request_runs_alone(
    tmp_path: Path, bundles: dict[str, Path], token_path: Path
) -> None:
    repo = make_repo(tmp_path, bundles, {"classifier": "dynamic_batching: false\ninstances: 2\n"})
    srv = ServerThread(options(repo, token_path)).start()
    try:
        rng = np.random.default_rng(8)
        xs = [rng.random((2, 3, 32, 32), dtype=np.float32) for _ in range(8)]
        outs = asyncio.run(_concurrent_http(srv.http, xs))
        for x, out in zip(xs, outs):
            np.testing.assert_allclose(out, reference(bundles["classifier"], {"input": x})["probs"], rtol=1e-5)
        assert _counts(srv) == (8, 8, 16)  # 8 executions of the requests' own batch of 2
        # an instance's thread starts with its first batch: both instances ran some
        names = {t.name.rsplit("_", 1)[0] for t in threading.enumerate()}
        assert {"classifier/1-instance0", "classifier/1-instance1"} <= names
    finally:
        srv.stop()


def test_mixed_shapes_are_never_stacked(tmp_path: Path, bundles: dict[str, Path], token_path: Path) -> None:
    """Detector requests of different image sizes share the queue but run in separate batches."""
    repo = make_repo(tmp_path, bundles, {"face": "max_batch: 4\nmax_queue_delay_us: 200000\n"})
    srv = ServerThread(options(repo, token_path)).start()
    try:
        rng = np.random.default_rng(9)
        xs = [rng.random((1, 3, 32 * (1 + i % 2), 64), dtype=np.float32) for i in range(4)]

        async def go() -> list[np.ndarray]:
            client = tha.InferenceServerClient(srv.http, conn_limit=4)
            try:

                async def one(x: np.ndarray) -> np.ndarray:
                    inp = tha.InferInput("input", list(x.shape), "FP32")
                    inp.set_data_from_numpy(x)
                    return (await client.infer("face", [inp], headers=auth())).as_numpy("conf")

                return list(await asyncio.gather(*(one(x) for x in xs)))
            finally:
                await client.close()

        outs = asyncio.run(go())
        for x, out in zip(xs, outs):
            np.testing.assert_allclose(out, reference(bundles["face"], {"input": x})["conf"], rtol=1e-5, atol=1e-6)
        m = srv.server.metrics
        assert m is not None
        assert m.value("nv_inference_exec_count", "face", "1") == 2  # one batch per shape
    finally:
        srv.stop()
