"""Fixtures for edge serve: a real repository (RetinaFace and a small classifier made with onnx.helper),
a server running in a background thread on loopback ports, and the real Triton clients."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.manifest import TensorSpec
from edge.serve.options import Limits, ServeOptions
from edge.serve.server import Server
from edge.spec import PostprocessSpec, PreprocessSpec
from tests.runtime.bundles import write_bundle

TOKEN = "serve-test-token-0123456789abcdef"
CLASSES = ("red", "green", "blue", "grey")
CLS_PRE = PreprocessSpec(input="input", resize="letterbox", color="rgb", size=(32, 32))
CLS_POST = PostprocessSpec(task="classify", labels=CLASSES, top_k=2)


def classifier_onnx(seed: int = 0) -> bytes:
    """Mean colour -> 4 classes: GlobalAveragePool, Flatten, Gemm, Softmax (weights from ``seed``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, 4)).astype(np.float32) * 4
    b = rng.standard_normal(4).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_classifier(path: Path, seed: int = 0) -> Path:
    return write_bundle(
        path,
        classifier_onnx(seed),
        preprocess=CLS_PRE,
        postprocess=CLS_POST,
        inputs=[TensorSpec("input", "float32", (-1, 3, 32, 32))],
        outputs=[TensorSpec("probs", "float32", (-1, 4))],
        name="classifier",
    )


def reference(bundle: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bundle's model.onnx run by ONNX Runtime directly: the independent reference for served outputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("serve-bundles")
    return {
        "face": write_bundle(base / "face.bundle"),
        "classifier": write_classifier(base / "classifier.bundle"),
        "classifier2": write_classifier(base / "classifier2.bundle", seed=1),
    }


def make_repo(root: Path, bundles: dict[str, Path], configs: dict[str, str] | None = None) -> Path:
    """``root/face/1``, ``root/classifier/1`` (copies) and optional ``root/NAME/config.yaml`` texts."""
    for name in ("face", "classifier"):
        shutil.copytree(bundles[name], root / name / "1")
    for name, text in (configs or {}).items():
        (root / name / "config.yaml").write_text(text)
    return root


class ServerThread:
    """A real Server on its own event loop in a background thread (ports bound before start() returns)."""

    def __init__(self, options: ServeOptions) -> None:
        self.server = Server(options)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            try:
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self.server.wait()
            await self.server.drain()
            await self.server.stop()

        asyncio.run(main())

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(120):
            raise TimeoutError("server did not start in 120 s")
        if self._error is not None:
            raise self._error
        return self

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the server's loop (repository actions from a test)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.server.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"

    def stop(self) -> None:
        self.server.request_stop()
        self._thread.join(60)


def options(repo: Path, token_file: Path | None, **kw: Any) -> ServeOptions:
    base = ServeOptions(
        repository=repo,
        http=("127.0.0.1", 0),
        grpc=("127.0.0.1", 0),
        token_file=token_file,
        auth=token_file is not None,
        poll_s=0,
        limits=Limits(max_request_bytes=8 << 20, max_tensor_elements=4 << 20, request_timeout_s=10, max_queue=64),
    )
    return replace(base, **kw)


@pytest.fixture(scope="session")
def token_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, bundles: dict[str, Path], token_path: Path
) -> Iterator[ServerThread]:
    """One server for a test module: face + classifier, token auth, dynamic batching with a short delay."""
    repo = make_repo(
        tmp_path_factory.mktemp("repo"),
        bundles,
        {"classifier": "max_batch: 16\nmax_queue_delay_us: 2000\ninstances: 2\n"},
    )
    srv = ServerThread(options(repo, token_path)).start()
    yield srv
    srv.stop()


def auth() -> dict[str, str]:
    """Fresh headers per call: tritonclient adds its own headers to the dict it is given."""
    return {"Authorization": f"Bearer {TOKEN}"}


def gauth() -> dict[str, str]:
    return {"authorization": f"Bearer {TOKEN}"}
