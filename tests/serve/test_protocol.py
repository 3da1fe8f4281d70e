"""KServe v2 over HTTP and gRPC with the real Triton clients (tritonclient.http / tritonclient.grpc)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from edge.cli import main as edge_main
from tests.runtime.bundles import photo, photo_path
from tests.serve.conftest import ServerThread, auth, gauth, reference


def test_health_and_metadata_over_both_protocols(served: ServerThread, bundles: dict[str, Path]) -> None:
    h = th.InferenceServerClient(served.http)
    g = tg.InferenceServerClient(served.grpc)
    assert h.is_server_live() and h.is_server_ready() and h.is_model_ready("face")
    assert g.is_server_live() and g.is_server_ready() and g.is_model_ready("classifier")
    assert not h.is_model_ready("nope") and not g.is_model_ready("nope")
    meta = h.get_server_metadata(headers=auth())
    assert meta["name"] == "edge" and {"binary_tensor_data", "model_repository", "statistics"} <= set(
        meta["extensions"]
    )
    assert g.get_server_metadata(headers=gauth()).name == "edge"
    m = h.get_model_metadata("face", headers=auth())
    # the bundle's manifest (tests/runtime/bundles.py) says input [-1,3,-1,-1] FP32 and three outputs
    assert m["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, -1, -1]}]
    assert [o["name"] for o in m["outputs"]] == ["loc", "conf", "landmarks"]
    gm = g.get_model_metadata("classifier", headers=gauth())
    assert gm.versions == ["1"] and list(gm.inputs[0].shape) == [-1, 3, 32, 32] and gm.outputs[0].datatype == "FP32"
    assert h.get_model_config("classifier", headers=auth())["max_batch_size"] == 16
    assert g.get_model_config("classifier", headers=gauth()).config.max_batch_size == 16


@pytest.mark.parametrize("binary", [True, False])
def test_http_raw_tensors_match_onnxruntime(served: ServerThread, bundles: dict[str, Path], binary: bool) -> None:
    x = np.random.default_rng(1).random((2, 3, 64, 96), dtype=np.float32)
    client = th.InferenceServerClient(served.http)
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [th.InferRequestedOutput(n, binary_data=binary) for n in ("conf", "loc")]
    result = client.infer("face", [inp], outputs=outs, headers=auth(), request_id="r1")
    ref = reference(bundles["face"], {"input": x})
    np.testing.assert_allclose(result.as_numpy("conf"), ref["conf"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.as_numpy("loc"), ref["loc"], rtol=1e-5, atol=1e-5)
    assert result.as_numpy("landmarks") is None  # not requested
    assert result.get_response()["id"] == "r1"


def test_grpc_raw_tensors_match_onnxruntime(served: ServerThread, bundles: dict[str, Path]) -> None:
    x = np.random.default_rng(2).random((3, 3, 32, 32), dtype=np.float32)
    client = tg.InferenceServerClient(served.grpc)
    inp = tg.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("classifier", [inp], headers=gauth(), model_version="1")
    np.testing.assert_allclose(
        result.as_numpy("probs"), reference(bundles["classifier"], {"input": x})["probs"], rtol=1e-5
    )
    assert result.get_response().model_version == "1"


def test_image_bytes_give_the_json_of_edge_infer(
    served: ServerThread, bundles: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """BYTES ``image`` -> BYTES ``results``: the same JSON `edge infer --json` prints for the same file."""
    jpg = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(jpg), photo("astronaut"))
    png = photo_path("camera")  # grayscale PNG
    assert edge_main(["infer", str(bundles["face"]), str(jpg), str(png), "--json", "--backend", "onnxruntime-cpu"]) == 0
    expected = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for e in expected:
        del e["image"]
    assert expected[0]["detections"], "the astronaut photo has a face"
    images = np.array([jpg.read_bytes(), png.read_bytes()], dtype=object)
    h = th.InferenceServerClient(served.http)
    inp = th.InferInput("image", [2], "BYTES")
    inp.set_data_from_numpy(images)
    got = h.infer("face", [inp], headers=auth()).as_numpy("results")
    assert [json.loads(x) for x in got] == expected
    g = tg.InferenceServerClient(served.grpc)
    ginp = tg.InferInput("image", [2], "BYTES")
    ginp.set_data_from_numpy(images)
    got = g.infer("face", [ginp], headers=gauth()).as_numpy("results")
    assert [json.loads(x) for x in got] == expected


def _post(served: ServerThread, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = served.http.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_predict_route(served: ServerThread, bundles: dict[str, Path]) -> None:
    x = np.random.default_rng(3).random((1, 3, 32, 32), dtype=np.float32)
    body = json.dumps({"model": "classifier", "input": x.tolist()}).encode()
    status, data = _post(served, "/predict", body, auth())
    assert status == 200
    probs = np.array(json.loads(data)["outputs"]["probs"], dtype=np.float32)
    np.testing.assert_allclose(probs, reference(bundles["classifier"], {"input": x})["probs"], rtol=1e-5)
    status, data = _post(served, "/predict", json.dumps({"input": x.tolist()}).encode(), auth())
    assert status == 400 and b"2 models are served" in data  # the default model is ambiguous here
    assert _post(served, "/predict", body)[0] == 401


def test_auth_on_every_route_but_health(served: ServerThread) -> None:
    h = th.InferenceServerClient(served.http)
    g = tg.InferenceServerClient(served.grpc)
    for call in (
        lambda: h.get_server_metadata(),
        lambda: h.get_model_metadata("face"),
        lambda: h.get_model_repository_index(),
    ):
        with pytest.raises(InferenceServerException) as err:
            call()
        assert err.value.status() == "401"
    with pytest.raises(InferenceServerException) as err:
        h.get_model_metadata("face", headers={"Authorization": "Bearer wrong-token-0123456789abcdef"})
    assert err.value.status() == "401"
    for gcall in (lambda: g.get_server_metadata(), lambda: g.get_model_repository_index()):
        with pytest.raises(InferenceServerException) as err:
            gcall()
        assert err.value.status() == "StatusCode.UNAUTHENTICATED"
    x = np.zeros((1, 3, 32, 32), np.float32)
    gi = tg.InferInput("input", list(x.shape), "FP32")
    gi.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as err:
        g.infer("classifier", [gi], headers={"authorization": "Bearer nope"})
    assert err.value.status() == "StatusCode.UNAUTHENTICATED"
    status, _ = _post(served, "/v2/repository/index", b"")
    assert status == 401
    assert h.is_server_ready() and g.is_server_live()  # health needs no token


def test_metrics_count_what_was_served(served: ServerThread) -> None:
    metrics = served.server.metrics
    assert metrics is not None
    before = metrics.value("nv_inference_request_success", "classifier", "1")
    before_items = metrics.value("nv_inference_count", "classifier", "1")
    client = th.InferenceServerClient(served.http)
    x = np.zeros((3, 3, 32, 32), np.float32)
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    for _ in range(4):
        client.infer("classifier", [inp], headers=auth())
    bad = th.InferInput("input", [1, 3, 31, 32], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 31, 32), np.float32))
    with pytest.raises(InferenceServerException):
        client.infer("classifier", [bad], headers=auth())
    host, port = served.http.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/metrics", headers=auth())
    text = conn.getresponse().read().decode()
    lines = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and line[0] != "#"
    }
    assert lines['nv_inference_request_success{model="classifier",version="1"}'] == before + 4
    assert lines['nv_inference_count{model="classifier",version="1"}'] == before_items + 12  # 4 requests x batch 3
    assert lines['nv_inference_request_failure{model="classifier",reason="INVALID",version="1"}'] >= 1
    for name in ("nv_inference_exec_count", "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"):
        assert f'{name}{{model="classifier",version="1"}}' in lines


def test_one_bundle_is_one_model_and_the_default_for_predict(bundles: dict[str, Path], token_path: Path) -> None:
    from tests.serve.conftest import options

    srv = ServerThread(options(bundles["classifier"], token_path, grpc=None)).start()
    try:
        h = th.InferenceServerClient(srv.http)
        assert h.get_model_repository_index(headers=auth()) == [
            {"name": "classifier", "version": "1", "state": "READY", "reason": ""}  # classifier.bundle -> classifier
        ]
        x = np.random.default_rng(4).random((1, 3, 32, 32), dtype=np.float32)
        status, data = _post(srv, "/predict", json.dumps({"input": x.tolist()}).encode(), auth())
        assert status == 200
        probs = np.array(json.loads(data)["outputs"]["probs"], dtype=np.float32)
        np.testing.assert_allclose(probs, reference(bundles["classifier"], {"input": x})["probs"], rtol=1e-5)
    finally:
        srv.stop()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(served: ServerThread, bundles: dict[str, Path], algorithm: str) -> None:
    x = np.random.default_rng(6).random((2, 3, 32, 32), dtype=np.float32)
    client = th.InferenceServerClient(served.http)
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(
        "classifier",
        [inp],
        headers=auth(),
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_allclose(
        result.as_numpy("probs"), reference(bundles["classifier"], {"input": x})["probs"], rtol=1e-5
    )


def test_live_while_loading_ready_after_warm_up(bundles: dict[str, Path], token_path: Path, tmp_path: Path) -> None:
    """Listeners open first: live at once, not ready (and inference refused) until every model is loaded and warm.
    The real loader runs behind a gate the test opens."""
    import asyncio
    import threading

    from edge.serve.repository import default_loader
    from edge.serve.server import Server
    from tests.serve.conftest import make_repo, options

    gate = threading.Event()
    real = default_loader()

    def gated(path: Path, config: object) -> object:
        gate.wait(60)
        return real(path, config)  # type: ignore[arg-type]

    server = Server(options(make_repo(tmp_path, bundles), token_path), loader=gated)  # type: ignore[arg-type]
    done = threading.Event()
    failed: list[BaseException] = []

    def main() -> None:
        async def go() -> None:
            try:
                await server.start()
            except BaseException as exc:
                failed.append(exc)
                return
            finally:
                done.set()
            await server.wait()
            await server.drain()
            await server.stop()

        asyncio.run(go())

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        assert server.listening.wait(60)
        h = th.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        g = tg.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        assert h.is_server_live() and g.is_server_live()
        assert not h.is_server_ready() and not g.is_server_ready() and not h.is_model_ready("classifier")
        inp = th.InferInput("input", [1, 3, 32, 32], "FP32")
        inp.set_data_from_numpy(np.zeros((1, 3, 32, 32), np.float32))
        with pytest.raises(InferenceServerException) as err:
            h.infer("classifier", [inp], headers=auth())
        assert err.value.status() == "503" and "loading" in err.value.message()
        gate.set()
        assert done.wait(60) and not failed
        assert h.is_server_ready() and g.is_server_ready() and h.is_model_ready("classifier")
        assert h.infer("classifier", [inp], headers=auth()).as_numpy("probs").shape == (1, 4)
    finally:
        gate.set()
        server.request_stop()
        thread.join(60)


def test_grpc_streaming_inference(served: ServerThread, bundles: dict[str, Path]) -> None:
    """tritonclient.grpc's stream: 6 requests on one stream, one of them bad; each answered by its id."""
    import queue

    got: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client = tg.InferenceServerClient(served.grpc)
    client.start_stream(callback=lambda result, error: got.put((result, error)), headers=gauth())
    rng = np.random.default_rng(12)
    xs = {f"r{i}": rng.random((1, 3, 32, 32), dtype=np.float32) for i in range(5)}
    try:
        for rid, x in xs.items():
            inp = tg.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            client.async_stream_infer("classifier", [inp], request_id=rid)
        bad = tg.InferInput("input", [1, 3, 8, 8], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float32))
        client.async_stream_infer("classifier", [bad], request_id="bad")
        answers = [got.get(timeout=30) for _ in range(6)]
    finally:
        client.stop_stream()
    results = {r.get_response().id: r.as_numpy("probs") for r, e in answers if e is None}
    errors = [e for r, e in answers if e is not None]
    assert sorted(results) == sorted(xs)
    for rid, x in xs.items():
        np.testing.assert_allclose(results[rid], reference(bundles["classifier"], {"input": x})["probs"], rtol=1e-5)
    assert len(errors) == 1 and "has shape [-1, 3, 32, 32]" in str(errors[0])
