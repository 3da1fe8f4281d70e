"""What the HTTP API knows about the running pipeline, apart from HTTP itself (see :mod:`edge.service.http`).

The model is shared with the pipeline: uploads are decoded outside any lock, then ``model.predict`` runs
under ``model_lock`` (:func:`edge.service.model_lock`, which every other caller of the model holds too), so a
backend that is not thread-safe (a TensorRT execution context and its buffers) never sees two calls at once
and ``model.timings`` belong to the request that read them.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import threading
import time
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from functools import partial
from typing import Any

import numpy as np

from edge.observer import FrameResult, PipelineStats
from edge.results import result_json
from edge.service import model_lock as shared_model_lock
from edge.service.config import HttpConfig
from edge.service.metrics import Metrics

MAX_STREAMS = 4  # concurrent /v1/stream clients
MAX_PIXELS = 64 * 1024 * 1024  # uploads that would decode to more pixels are refused before decoding
KEEPALIVE_S = 5.0  # a stream resends its last frame when nothing new came for this long


class Api:
    def __init__(
        self,
        config: HttpConfig,
        model: Any,
        token: bytes | None,
        metrics: Metrics,
        model_lock: threading.Lock | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.metrics = metrics
        # By default the model's own lock (Model.lock), so a request's predict + timings are one atomic step.
        self.model_lock = model_lock if model_lock is not None else shared_model_lock(model)
        self.state = "starting"
        self.stream_slots = threading.BoundedSemaphore(MAX_STREAMS)
        self._token_digest = hashlib.sha256(token).digest() if token is not None else None
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._frame: FrameResult | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._jpeg_lock = threading.Lock()

    # -- auth --------------------------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        if self._token_digest is None:
            return True  # auth: none (loopback only, enforced by HttpConfig)
        scheme, _, value = (header or "").strip().partition(" ")
        given = hashlib.sha256(value.strip().encode("utf-8", "replace")).digest()
        # Equal-length digests, compared in constant time: neither the token nor its length leaks.
        return hmac.compare_digest(given, self._token_digest) and scheme.lower() == "bearer"

    # -- pipeline side ------------------------------------------------------------------------------
    def set_state(self, state: str, stats: PipelineStats | None) -> None:
        with self._cond:
            self.state = state
            self.metrics.state = state
            if stats is not None:
                self.metrics.stats = stats
            if state in ("stopping", "stopped"):
                self._closed.set()
            self._cond.notify_all()

    def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
        self.metrics.on_frame(frame, stats)
        if frame.image is None:
            return
        with self._cond:
            self._frame = frame
            self._seq += 1
            self._cond.notify_all()

    # -- /v1/status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        s = self.metrics.stats
        return {
            "state": self.state,
            "uptime_s": round(time.time() - self.metrics.started, 1),
            "model": model_info(self.model),
            "pipeline": {
                "frames": s.frames,
                "fps": round(s.fps, 2),
                "dropped": s.dropped,
                "reconnects": s.reconnects,
                "sources": dict(s.source_state),
                "stage_ms": {k: round(v, 3) for k, v in s.stage_ms.items()},
                "events": s.extra.get("events"),  # tracks, line crossings, zones (edge.events); None without tracking
            },
            "telemetry": self.metrics.read_telemetry(),
            "http": {"auth": self.config.auth, "max_upload_mb": self.config.max_upload_mb},
        }

    # -- /v1/infer ----------------------------------------------------------------------------------
    def infer(self, body: bytes, content_type: str) -> tuple[int, dict[str, Any], dict[str, float]]:
        """Decode an upload and run the model.

        Returns ``(200, the JSON of edge infer --json, stage timings in ms)`` or ``(4xx, {"error": reason}, {})``.
        """
        import cv2

        name, data = "upload", body
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            part = multipart_file(body, content_type)
            if part is None:
                return 400, {"error": "multipart upload has no file part (send the image as a field named file)"}, {}
            name, data = part
        if not data:
            return 400, {"error": "empty upload: send the image bytes (JPEG, PNG, BMP, TIFF or WebP) as the body"}, {}
        size = image_size(data)
        if size is not None and size[0] * size[1] > MAX_PIXELS:
            limit = MAX_PIXELS // 2**20
            return 413, {"error": f"image of {size[0]}x{size[1]} pixels is over the {limit} megapixel limit"}, {}
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            reason = f"could not decode the {len(data)}-byte upload as an image (JPEG, PNG, BMP, TIFF or WebP expected)"
            return 400, {"error": reason}, {}
        with self.model_lock:
            result = self.model.predict(image)
            timings = {k: float(v) for k, v in (getattr(self.model, "timings", None) or {}).items()}
        return 200, {"image": name, **result_json(result)}, timings

    # -- /v1/stream ---------------------------------------------------------------------------------
    def jpeg_frames(self) -> Iterator[bytes]:
        """Annotated frames as JPEG, at most ``stream_fps`` per second, until the pipeline stops."""
        period = 1.0 / self.config.stream_fps
        seen = -1
        while not self._closed.is_set():
            with self._cond:
                self._cond.wait_for(partial(self._news, seen), timeout=KEEPALIVE_S)
                frame, seq = self._frame, self._seq
            if self._closed.is_set():
                return
            if frame is None:
                continue
            yield self._encode(frame, seq)  # a repeat of the last frame doubles as a keep-alive
            seen = seq
            if self._closed.wait(period):  # rate limit, woken at once on shutdown
                return

    def _news(self, seen: int) -> bool:
        return self._closed.is_set() or self._seq != seen

    def _encode(self, frame: FrameResult, seq: int) -> bytes:
        with self._jpeg_lock:
            if self._jpeg is not None and self._jpeg[0] == seq:
                return self._jpeg[1]
            jpeg = encode_jpeg(frame, self.config.jpeg_quality)
            self._jpeg = (seq, jpeg)
            return jpeg


def encode_jpeg(frame: FrameResult, quality: int) -> bytes:
    import cv2

    from edge.draw import draw

    image = frame.image if frame.image is not None else np.zeros((1, 1, 3), np.uint8)
    annotated = draw(image, frame.result)  # draws on a copy
    ok, buf = cv2.imencode(".jpg", annotated, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    return buf.tobytes() if ok else b""


def model_info(model: Any) -> dict[str, Any]:
    manifest = getattr(model, "manifest", None)
    artifact = getattr(model, "artifact", None)
    return {
        "name": getattr(manifest, "name", None),
        "backend": getattr(model, "backend_name", None),
        "artifact": getattr(artifact, "file", None),
        "precision": getattr(artifact, "precision", None),
    }


def multipart_file(body: bytes, content_type: str) -> tuple[str, bytes] | None:
    """``(filename, bytes)`` of the first file part of a multipart/form-data body (or a part named file/image)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        if filename or name in ("file", "image"):
            payload = part.get_payload(decode=True)
            return (filename or str(name), payload) if isinstance(payload, bytes) else None
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None for other formats or damage."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(w), int(h)
        i += 2 + length
    return None
