"""Fixtures for service tests: a real RetinaFace bundle and model, real photos, a token file, a live API."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.runtime import Facts, load
from edge.runtime.model import Model
from edge.service.config import HttpConfig
from edge.service.http import HttpObserver
from tests.runtime.bundles import photo, write_bundle

CPU = Facts(target="cpu", cuda=False, cuda_reason="no NVIDIA GPU detected")
TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="session")
def face_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("bundles") / "retinaface.bundle")


@pytest.fixture(scope="session")
def face_model(face_bundle: Path) -> Iterator[Model]:
    model = load(face_bundle, facts=CPU, warmup=1)
    yield model
    model.close()


@pytest.fixture(scope="session")
def jpeg() -> dict[str, bytes]:
    """Real photos as JPEG uploads: astronaut (one face), chelsea (a cat, no face), camera (grayscale, one face)."""
    out = {}
    for name in ("astronaut", "chelsea", "camera"):
        ok, buf = cv2.imencode(".jpg", photo(name), [cv2.IMWRITE_JPEG_QUALITY, 92])
        assert ok
        out[name] = buf.tobytes()
    return out


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A real HTTP client (http.client) against the API on loopback."""

    def __init__(self, port: int, token: str | None = TOKEN) -> None:
        self.port = port
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = "default",
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            h = dict(headers or {})
            tok = self.token if token == "default" else token
            if tok is not None:
                h["Authorization"] = f"Bearer {tok}"
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def infer(self, data: bytes, content_type: str = "image/jpeg", **kw: Any) -> Reply:
        return self.request("POST", "/v1/infer", body=data, headers={"Content-Type": content_type}, **kw)


@pytest.fixture
def api(face_model: Model, token_file: Path) -> Iterator[tuple[HttpObserver, Client]]:
    """The HTTP API of the real model on 127.0.0.1 (a free port), with a token and a 1 MB upload limit."""
    config = HttpConfig.from_dict({"listen": "127.0.0.1:0", "token_file": str(token_file), "max_upload_mb": 1})
    observer = HttpObserver(config, face_model, environ={})
    try:
        yield observer, Client(observer.port)
    finally:
        observer.close()


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image
