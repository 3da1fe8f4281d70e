"""Versions and hot reload under load, with real clients: not one request may fail during a swap."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.grpc.aio as tga
import tritonclient.http as th
import tritonclient.http.aio as tha
from tritonclient.utils import InferenceServerException

from tests.serve.conftest import ServerThread, auth, gauth, make_repo, options, reference

X = np.random.default_rng(11).random((1, 3, 32, 32), dtype=np.float32)


class Load:
    """Concurrent real clients (HTTP and gRPC, async) sending requests until stopped; every outcome kept."""

    def __init__(self, srv: ServerThread, concurrency: int = 4) -> None:
        self.srv = srv
        self.concurrency = concurrency
        self.ok: list[tuple[str, np.ndarray]] = []  # (model_version, probs)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        h = tha.InferenceServerClient(self.srv.http, conn_limit=self.concurrency)
        g = tga.InferenceServerClient(self.srv.grpc)

        async def worker(i: int) -> None:
            while not self._stop.is_set():
                try:
                    if i % 2:
                        inp = tha.InferInput("input", list(X.shape), "FP32")
                        inp.set_data_from_numpy(X)
                        r = await h.infer("classifier", [inp], headers=auth())
                        self.ok.append((r.get_response()["model_version"], r.as_numpy("probs")))
                    else:
                        ginp = tga.InferInput("input", list(X.shape), "FP32")
                        ginp.set_data_from_numpy(X)
                        gr = await g.infer("classifier", [ginp], headers=gauth())
                        self.ok.append((gr.get_response().model_version, gr.as_numpy("probs")))
                except Exception as exc:  # every failure is a test failure, kept with its message
                    self.errors.append(f"{type(exc).__name__}: {exc}")

        try:
            await asyncio.gather(*(worker(i) for i in range(self.concurrency)))
        finally:
            await h.close()
            await g.close()

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def wait_for(self, cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}; errors so far: {self.errors[:3]}")
            time.sleep(0.02)  # polling a condition, not synchronising on time

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def _version(srv: ServerThread) -> str:
    repo = srv.server.repository
    assert repo is not None
    served = repo.entries["classifier"].served
    return served.version if served is not None else ""


def test_new_version_swaps_in_under_load_without_a_failed_request(
    tmp_path: Path, bundles: dict[str, Path], token_path: Path
) -> None:
    repo = make_repo(tmp_path, bundles)
    srv = ServerThread(options(repo, token_path, poll_s=0.05)).start()
    ref1 = reference(bundles["classifier"], {"input": X})["probs"]
    ref2 = reference(bundles["classifier2"], {"input": X})["probs"]
    assert not np.allclose(ref1, ref2)  # the two versions answer differently
    try:
        with Load(srv) as load:
            load.wait_for(lambda: len(load.ok) >= 20, "requests on version 1")
            staging = tmp_path / ".staging"
            shutil.copytree(bundles["classifier2"], staging)
            os.rename(staging, repo / "classifier" / "2")  # appears at once, whole
            load.wait_for(lambda: _version(srv) == "2", "version 2 to be served")
            n = len(load.ok)
            load.wait_for(lambda: len(load.ok) >= n + 20, "requests on version 2")
        assert load.errors == []
        versions = [v for v, _ in load.ok]
        assert versions[0] == "1" and versions[-1] == "2"
        for v, probs in load.ok:  # each answer came whole from the version it names
            np.testing.assert_allclose(probs, ref1 if v == "1" else ref2, rtol=1e-5, atol=1e-6)
        assert versions.index("2") > 0 and "1" not in versions[versions.index("2") + 8 :]
        index = th.InferenceServerClient(srv.http).get_model_repository_index(headers=auth())
        assert {"name": "classifier", "version": "2", "state": "READY", "reason": ""} in index
    finally:
        srv.stop()


def test_bundle_replaced_in_place_and_a_broken_version_keeps_the_old_one(
    tmp_path: Path, bundles: dict[str, Path], token_path: Path
) -> None:
    repo = make_repo(tmp_path, bundles)
    srv = ServerThread(options(repo, token_path, poll_s=0)).start()  # explicit loads: the repository API
    ref2 = reference(bundles["classifier2"], {"input": X})["probs"]
    h = th.InferenceServerClient(srv.http)
    g = tg.InferenceServerClient(srv.grpc)
    try:
        with Load(srv) as load:
            load.wait_for(lambda: len(load.ok) >= 10, "requests before the replacement")
            version_dir = repo / "classifier" / "1"
            shutil.copytree(bundles["classifier2"], tmp_path / ".new")
            shutil.rmtree(version_dir)
            os.rename(tmp_path / ".new", version_dir)
            h.load_model("classifier", headers=auth())
            n = len(load.ok)
            load.wait_for(lambda: len(load.ok) >= n + 10, "requests after the replacement")
        assert load.errors == []
        np.testing.assert_allclose(load.ok[-1][1], ref2, rtol=1e-5, atol=1e-6)

        broken = repo / "classifier" / "3"
        shutil.copytree(bundles["classifier"], broken)
        (broken / "model.onnx").write_bytes(b"not an onnx model")  # sha256 no longer matches the manifest
        with pytest.raises(InferenceServerException) as err:
            g.load_model("classifier", headers=gauth())
        assert "sha256" in err.value.message()
        rows = h.get_model_repository_index(headers=auth())
        assert {"name": "classifier", "version": "1", "state": "READY", "reason": ""} in rows
        failed = [r for r in rows if r["name"] == "classifier" and r["version"] == "3"]
        assert failed and failed[0]["state"] == "UNAVAILABLE" and "sha256" in failed[0]["reason"]
        inp = th.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        result = h.infer("classifier", [inp], headers=auth())  # the old one still serves
        np.testing.assert_allclose(result.as_numpy("probs"), ref2, rtol=1e-5, atol=1e-6)
    finally:
        srv.stop()


def test_unload_answers_accepted_requests_then_refuses(
    tmp_path: Path, bundles: dict[str, Path], token_path: Path
) -> None:
    # a long queue delay keeps accepted requests waiting in the batcher while unload starts
    repo = make_repo(
        tmp_path, bundles, {"classifier": "max_batch: 8\npreferred_batch: [8]\nmax_queue_delay_us: 300000\n"}
    )
    srv = ServerThread(options(repo, token_path)).start()
    try:

        async def go() -> tuple[list[object], None]:
            client = tha.InferenceServerClient(srv.http, conn_limit=8)
            repo_obj = srv.server.repository
            assert repo_obj is not None
            try:

                async def one() -> object:
                    inp = tha.InferInput("input", list(X.shape), "FP32")
                    inp.set_data_from_numpy(X)
                    return (await client.infer("classifier", [inp], headers=auth())).as_numpy("probs")

                tasks = [asyncio.ensure_future(one()) for _ in range(4)]
                served = repo_obj.entries["classifier"].served
                assert served is not None
                while served.batcher.queued < 4:  # all four accepted and queued
                    await asyncio.sleep(0.01)
                unload = client.unload_model("classifier", headers=auth())
                return list(await asyncio.gather(*tasks, return_exceptions=True)), await unload
            finally:
                await client.close()

        # the batcher lives on the server's loop: read its queue from there
        results, _ = srv.call(go())
        ref = reference(bundles["classifier"], {"input": X})["probs"]
        for r in results:
            assert isinstance(r, np.ndarray), r
            np.testing.assert_allclose(r, ref, rtol=1e-5, atol=1e-6)
        h = th.InferenceServerClient(srv.http)
        assert not h.is_model_ready("classifier")
        inp = th.InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X)
        with pytest.raises(InferenceServerException) as err:
            h.infer("classifier", [inp], headers=auth())
        assert err.value.status() == "503" and "unloaded" in err.value.message()
        h.load_model("classifier", headers=auth())
        assert h.is_model_ready("classifier")
    finally:
        srv.stop()


def test_a_version_caught_half_copied_is_retried_when_the_copy_ends(
    tmp_path: Path, bundles: dict[str, Path], token_path: Path
) -> None:
    repo = make_repo(tmp_path, bundles)
    srv = ServerThread(options(repo, token_path, poll_s=0)).start()
    repository = srv.server.repository
    assert repository is not None
    try:
        v2 = repo / "classifier" / "2"
        shutil.copytree(bundles["classifier2"], v2)
        full = (v2 / "model.onnx").read_bytes()
        (v2 / "model.onnx").write_bytes(full[: len(full) // 2])  # the copy is still running
        srv.call(repository.poll())
        rows = repository.index()
        assert {"name": "classifier", "version": "1", "state": "READY", "reason": ""} in rows
        assert any(r["version"] == "2" and r["state"] == "UNAVAILABLE" for r in rows), rows
        srv.call(repository.poll())  # the same half file: not retried
        assert _version(srv) == "1"
        (v2 / "model.onnx").write_bytes(full)  # the copy ends
        srv.call(repository.poll())
        assert _version(srv) == "2"
        assert repository.index() == [
            {"name": "classifier", "version": "2", "state": "READY", "reason": ""},
            {"name": "face", "version": "1", "state": "READY", "reason": ""},
        ]
    finally:
        srv.stop()


def test_a_model_removed_then_copied_back(tmp_path: Path, bundles: dict[str, Path], token_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", bundles)
    srv = ServerThread(options(repo, token_path, poll_s=0)).start()
    repository = srv.server.repository
    assert repository is not None
    try:
        shutil.move(str(repo / "classifier"), str(tmp_path / "away"))
        srv.call(repository.poll())
        assert [r["name"] for r in repository.index()] == ["face"]
        h = th.InferenceServerClient(srv.http)
        assert not h.is_model_ready("classifier") and h.is_server_ready()
        shutil.move(str(tmp_path / "away"), str(repo / "classifier"))
        srv.call(repository.poll())
        assert h.is_model_ready("classifier")
    finally:
        srv.stop()
