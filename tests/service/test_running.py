"""The API while a real pipeline runs: a looping photo through the real model, status, metrics, MJPEG, uploads."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.draw import draw
from edge.observer import FrameResult, PipelineControl, PipelineStats
from edge.pipeline import Pipeline, PipelineOptions
from edge.runtime.model import Model
from edge.service.config import HttpConfig
from edge.service.http import HttpObserver
from edge.sources import open_source
from tests.runtime.bundles import photo
from tests.service import promtext
from tests.service.conftest import TOKEN, Client, decode_jpeg


class FrameCounter:
    """An observer that lets the test wait for frames instead of sleeping."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.frames = 0
        self.reached = threading.Event()
        self.cond = threading.Condition()

    def wait_beyond(self, frames: int, timeout: float = 30.0) -> bool:
        """Block until more than ``frames`` frames were seen."""
        with self.cond:
            return self.cond.wait_for(lambda: self.frames > frames, timeout)

    def on_start(self, stats: PipelineStats, control: PipelineControl) -> None:
        pass

    def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
        with self.cond:
            self.frames += 1
            self.cond.notify_all()
        if self.frames >= self.wanted:
            self.reached.set()

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        pass

    def on_stop(self, stats: PipelineStats) -> None:
        self.reached.set()


@pytest.fixture
def running(
    face_model: Model, token_file: Path, tmp_path: Path
) -> Iterator[tuple[Pipeline, HttpObserver, Client, str, FrameCounter]]:
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "astronaut.png"), photo("astronaut"))
    uri = f"file://{photos}?loop=true&fps=20"
    config = HttpConfig.from_dict({"listen": "127.0.0.1:0", "token_file": str(token_file), "stream_fps": 20})
    observer = HttpObserver(config, face_model, environ={})
    counter = FrameCounter(10)  # > 0.25 s of frames: the pipeline refreshes fps for observers every 0.25 s
    pipeline = Pipeline(
        face_model, [open_source(uri)], [], PipelineOptions(handle_signals=False), observers=[observer, counter]
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pipeline.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert counter.reached.wait(60), "no frames from the pipeline"
        yield pipeline, observer, Client(observer.port), uri, counter
    finally:
        pipeline.stop()
        thread.join(30)
        observer.close()
    assert not errors, errors


def read_mjpeg(port: int, parts: int) -> tuple[str, list[bytes]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/v1/stream", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    ctype = resp.getheader("Content-Type") or ""
    frames = []
    try:
        for _ in range(parts):
            assert resp.readline() == b"--edgeframe\r\n"
            headers = {}
            while (line := resp.readline()) != b"\r\n":
                k, v = line.decode().split(":", 1)
                headers[k.lower()] = v.strip()
            assert headers["content-type"] == "image/jpeg"
            frames.append(resp.read(int(headers["content-length"])))
            assert resp.read(2) == b"\r\n"
    finally:
        conn.close()
    return ctype, frames


def test_status_while_running(running: tuple[Pipeline, HttpObserver, Client, str, FrameCounter]) -> None:
    _, _, client, uri, _ = running
    assert client.get("/readyz").json() == {"ready": True, "state": "running"}
    status = client.get("/v1/status").json()
    assert status["state"] == "running"
    assert status["pipeline"]["frames"] >= 3
    assert status["pipeline"]["sources"] == {uri: "running"}
    assert set(status["pipeline"]["stage_ms"]) >= {"preprocess", "infer", "postprocess"}


def test_metrics_while_running(running: tuple[Pipeline, HttpObserver, Client, str, FrameCounter]) -> None:
    _, _, client, uri, _ = running
    reply = client.get("/metrics")
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples, types = promtext.parse(reply.body.decode())
    assert types["edge_stage_latency_ms"] == "histogram" and types["edge_frames_total"] == "counter"
    assert promtext.value(samples, "edge_up") == 1
    assert promtext.value(samples, "edge_frames_total") >= 3
    assert promtext.value(samples, "edge_fps") > 0
    assert promtext.value(samples, "edge_dropped_frames_total") >= 0
    assert promtext.value(samples, "edge_reconnects_total") == 0
    assert promtext.value(samples, "edge_source_state", source=uri, state="running") == 1
    for stage in ("preprocess", "infer", "postprocess", "end_to_end"):
        assert promtext.value(samples, "edge_stage_latency_ms_count", stage=stage) >= 3, stage


def test_uploads_while_running(
    running: tuple[Pipeline, HttpObserver, Client, str, FrameCounter], jpeg: dict[str, bytes]
) -> None:
    _, _, client, _, counter = running
    for name, faces in (("astronaut", 1), ("chelsea", 0), ("camera", 1), ("astronaut", 1)):
        before = counter.frames
        reply = client.infer(jpeg[name])
        assert reply.status == 200, reply.body
        assert len(reply.json()["detections"]) == faces
        assert counter.wait_beyond(before)  # the pipeline keeps going between uploads


def test_mjpeg_stream_of_annotated_frames(
    running: tuple[Pipeline, HttpObserver, Client, str, FrameCounter], face_model: Model
) -> None:
    _, observer, _, _, _ = running
    ctype, frames = read_mjpeg(observer.port, 3)
    assert ctype == "multipart/x-mixed-replace; boundary=edgeframe"
    raw = photo("astronaut")
    annotated = draw(raw, face_model.predict(raw))
    for data in frames:
        image = decode_jpeg(data)
        assert image.shape == raw.shape
        to_annotated = float(np.abs(image.astype(np.int16) - annotated).mean())
        to_raw = float(np.abs(image.astype(np.int16) - raw).mean())
        assert to_annotated < to_raw  # the boxes are drawn
    assert observer.api.stream_slots.acquire(blocking=False)  # the slot was given back
    observer.api.stream_slots.release()


def test_stream_ends_when_the_pipeline_stops(running: tuple[Pipeline, HttpObserver, Client, str, FrameCounter]) -> None:
    pipeline, observer, client, _, _ = running
    conn = http.client.HTTPConnection("127.0.0.1", observer.port, timeout=30)
    conn.request("GET", "/v1/stream", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    assert resp.readline() == b"--edgeframe\r\n"
    pipeline.stop()
    rest = resp.read()  # returns only because the server ends the stream
    conn.close()
    assert rest.endswith(b"--edgeframe--\r\n")
    assert client.get("/readyz").status == 503
