"""The API and the pipeline share one lock on the model: the runtime Model's own ``lock`` (an RLock)."""

from __future__ import annotations

import threading
from pathlib import Path

from edge.config import RunConfig
from edge.runtime.model import Model
from edge.service import attach, model_lock
from edge.service.config import HttpConfig
from edge.service.http import HttpObserver
from tests.service.conftest import Client, decode_jpeg


def test_model_lock_is_the_models_own_lock(face_model: Model) -> None:
    assert model_lock(face_model) is face_model.lock
    # Something without a lock attribute gets one lock of its own, the same on every call.
    a, b = object.__new__(type("A", (), {})), object.__new__(type("B", (), {}))
    assert model_lock(a) is model_lock(a) and model_lock(a) is not model_lock(b)


def test_attach_and_http_observer_use_the_models_lock(face_model: Model, face_bundle: Path, token_file: Path) -> None:
    run_config = RunConfig.from_dict(
        {
            "model": str(face_bundle),
            "source": "file:///nonexistent.mp4",
            "http": {"listen": "127.0.0.1:0", "token_file": str(token_file)},
        }
    )
    observers = attach(run_config, face_model)
    try:
        http = next(o for o in observers if isinstance(o, HttpObserver))
        assert http.api.model_lock is face_model.lock
    finally:
        for obs in observers:
            obs.close()
    # Built directly (no model_lock given), the API still locks on the model's own lock.
    config = HttpConfig.from_dict({"listen": "127.0.0.1:0", "token_file": str(token_file)})
    direct = HttpObserver(config, face_model, environ={})
    try:
        assert direct.api.model_lock is face_model.lock
    finally:
        direct.close()


def test_an_upload_waits_while_another_caller_holds_the_model(
    api: tuple[HttpObserver, Client], face_model: Model, jpeg: dict[str, bytes]
) -> None:
    _, client = api
    replies: list[int] = []
    done = threading.Event()

    def upload() -> None:
        replies.append(client.infer(jpeg["astronaut"]).status)
        done.set()

    with face_model.lock:  # what the pipeline's inference stage holds during a backend call
        worker = threading.Thread(target=upload, daemon=True)
        worker.start()
        assert not done.wait(0.5), "the upload ran inside another caller's model call"
        # Re-entrant: the holder can still call the model (Model.predict takes the same lock again).
        assert len(face_model.predict(decode_jpeg(jpeg["camera"])).boxes) == 1
    assert done.wait(30) and replies == [200]
    worker.join(5)
