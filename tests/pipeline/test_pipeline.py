"""The threaded pipeline with a real model (RetinaFace on ONNX Runtime), real sources and real sinks."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge.errors import EdgeError, SourceError
from edge.observer import FrameResult, PipelineControl, PipelineStats
from edge.pipeline import Pipeline, PipelineError, PipelineOptions
from edge.sinks import open_sink
from edge.sources import open_source
from tests.helpers.rtsp_server import RtspServer, available


class Recorder:
    """A pipeline observer that keeps what it is told (thread-safe)."""

    def __init__(self, on_frame: Any = None) -> None:
        self.frames: list[FrameResult] = []
        self.events: list[tuple[str, str]] = []
        self.started: PipelineControl | None = None
        self.stopped: PipelineStats | None = None
        self.cond = threading.Condition()
        self._hook = on_frame

    def on_start(self, stats: PipelineStats, control: PipelineControl) -> None:
        self.started = control

    def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()
        if self._hook is not None:
            self._hook(frame, stats)

    def on_event(self, kind: str, message: str, data: dict[str, Any]) -> None:
        with self.cond:
            self.events.append((kind, message))
            self.cond.notify_all()

    def on_stop(self, stats: PipelineStats) -> None:
        self.stopped = stats

    def wait(self, predicate: Any, timeout: float = 30.0) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_faces_clip_end_to_end(model: Any, faces_clip: Path, tmp_path: Path) -> None:
    threads: set[str] = set()
    rec = Recorder(lambda frame, stats: threads.update(t.name for t in threading.enumerate()))
    sinks = [open_sink(f"jsonl://{tmp_path}/events.jsonl"), open_sink(f"file://{tmp_path}/out.mp4")]
    stats = Pipeline(model, [open_source(f"file://{faces_clip}")], sinks, observers=[rec]).run()
    events = read_events(tmp_path / "events.jsonl")
    assert stats.frames == 16 == len(events) and stats.dropped == 0
    assert [e["frame_id"] for e in events] == list(range(16))
    assert all(len(e["detections"]) == 2 for e in events), "two faces in every frame"
    assert all(d["label"] == "face" and d["score"] > 0.9 and len(d["keypoints"]) == 5 for d in events[0]["detections"])
    # the astronaut glides right, grace_hopper left
    xs = [sorted(e["detections"], key=lambda d: d["box"][1])[0]["box"][0] for e in events]
    assert xs[-1] - xs[0] > 200
    assert all(e["capture_time"] <= e["result_time"] for e in events)
    assert set(stats.stage_ms) == {"preprocess", "infer", "postprocess", "sink"}
    assert set(rec.frames[0].timings_ms) == {"preprocess", "infer", "postprocess", "sink"}
    assert rec.started is not None and rec.stopped is not None and rec.stopped.frames == 16
    stages = {"pipeline-prepare", "pipeline-infer", "pipeline-finish", "pipeline-sink"}
    assert stages <= threads and any(t.startswith("capture:file://") for t in threads), "each stage on its own thread"
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 16
    cap.release()


def test_fused_model_protocol_gives_the_same_results(model: Any, faces_clip: Path, tmp_path: Path) -> None:
    class PredictOnly:  # the small protocol: predict/predict_batch/max_batch/timings/close, nothing else
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.max_batch = inner.max_batch

        @property
        def timings(self) -> dict[str, float]:
            return self.inner.timings

        def predict(self, image: np.ndarray) -> Any:
            return self.inner.predict(image)

        def predict_batch(self, images: Sequence[np.ndarray]) -> list[Any]:
            return self.inner.predict_batch(images)

        def close(self) -> None:
            pass

    split = Pipeline(model, [open_source(f"file://{faces_clip}")], [open_sink(f"jsonl://{tmp_path}/a.jsonl")])
    fused = Pipeline(
        PredictOnly(model), [open_source(f"file://{faces_clip}")], [open_sink(f"jsonl://{tmp_path}/b.jsonl")]
    )
    split.run()
    stats = fused.run()
    assert split.stages.split and not fused.stages.split
    a, b = read_events(tmp_path / "a.jsonl"), read_events(tmp_path / "b.jsonl")
    assert [e["detections"] for e in a] == [e["detections"] for e in b]
    assert {"preprocess", "infer", "postprocess"} <= set(stats.stage_ms)


def test_sources_share_one_engine_in_batches(model: Any, faces_clip: Path, tmp_path: Path) -> None:
    uris = [f"file://{faces_clip}", f"file://{faces_clip}?frames=16"]
    p = Pipeline(model, [open_source(u) for u in uris], [open_sink(f"jsonl://{tmp_path}/e.jsonl")])
    stats = p.run()
    events = read_events(tmp_path / "e.jsonl")
    assert p.stages.max_batch == 2 and stats.frames == 32
    by_source = {u: {e["frame_id"]: e["detections"] for e in events if e["source"] == u} for u in uris}
    assert sorted(by_source[uris[0]]) == sorted(by_source[uris[1]]) == list(range(16))
    assert by_source[uris[0]] == by_source[uris[1]], "each result goes back to its own frame"
    assert stats.extra["batches"] < 32, "frames of the two sources ran in shared inference calls"


def test_stride_and_max_frames(model: Any, faces_clip: Path, tmp_path: Path) -> None:
    p = Pipeline(
        model,
        [open_source(f"file://{faces_clip}")],
        [open_sink(f"jsonl://{tmp_path}/e.jsonl")],
        PipelineOptions(stride=3),
    )
    stats = p.run()
    assert [e["frame_id"] for e in read_events(tmp_path / "e.jsonl")] == [0, 3, 6, 9, 12, 15]
    assert stats.extra["skipped"] == 10
    p = Pipeline(model, [open_source("test://?width=96&height=64")], [], PipelineOptions(max_frames=7))
    stats = p.run()
    assert stats.frames == 7 and "7 frames" in p.stop_reason


def test_fps_cap_and_control(model: Any) -> None:
    import time

    p = Pipeline(model, [open_source("test://?width=96&height=64")], [], PipelineOptions(max_frames=6, fps_cap=20))
    t0 = time.monotonic()
    stats = p.run()
    assert stats.frames == 6 and time.monotonic() - t0 >= 5 / 20, "the cap spaces frames at least 1/20 s apart"
    p.set_fps_cap(5)
    assert p.stats().extra["fps_cap"] == 5
    p.set_fps_cap(None)
    assert p.stats().extra["fps_cap"] == 20, "None restores the configured cap"


def test_stop_drains_every_frame_in_flight(model: Any, tmp_path: Path) -> None:
    holder: dict[str, Pipeline] = {}

    def stop_at_5(frame: FrameResult, stats: PipelineStats) -> None:
        if frame.frame_id == 5:
            holder["p"].stop("test")

    p = Pipeline(
        model,
        [open_source("test://?width=320&height=240")],
        [open_sink(f"jsonl://{tmp_path}/e.jsonl")],
        observers=[Recorder(stop_at_5)],
    )
    holder["p"] = p
    stats = p.run()
    events = read_events(tmp_path / "e.jsonl")
    assert stats.frames == len(events) == p.dispatched >= 6, "every frame that entered was written"
    assert [e["frame_id"] for e in events] == list(range(len(events)))


class FailingSink:
    uri = "boom://"
    needs_image = False

    def __init__(self, at: int) -> None:
        self.at = at
        self.closed = False

    def open(self) -> None:
        pass

    def write(self, frame: FrameResult) -> None:
        if frame.frame_id == self.at:
            raise RuntimeError("disk on fire")

    def close(self) -> None:
        self.closed = True

    def describe(self) -> str:
        return "nowhere"


def test_sink_exception_surfaces_with_the_stage_named(model: Any) -> None:
    sink = FailingSink(3)
    src = open_source("test://?width=96&height=64")
    with pytest.raises(PipelineError, match=r"sink boom:// stage failed: RuntimeError: disk on fire"):
        Pipeline(model, [src], [sink]).run()
    assert sink.closed and src.state == "stopped"


def test_observer_error_keeps_its_type_and_names_the_observer(model: Any) -> None:
    class Strict(Recorder):
        def on_frame(self, frame: FrameResult, stats: PipelineStats) -> None:
            raise SourceError("camera angle changed")

    with pytest.raises(SourceError, match=r"observer Strict stage: camera angle changed"):
        Pipeline(model, [open_source("test://?width=96&height=64")], [], observers=[Strict()]).run()


def test_capture_and_infer_errors_surface(model: Any, faces_clip: Path, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(faces_clip.read_bytes())
    rec = Recorder()
    src = open_source(f"file://{clip}?loop=1")
    clip_gone = threading.Thread(target=lambda: rec.wait(lambda: len(rec.frames) >= 1) and clip.unlink())
    clip_gone.start()
    with pytest.raises(SourceError, match=rf"capture file://{clip}\?loop=1 stage: could not open"):
        Pipeline(model, [src], [], observers=[rec]).run()
    clip_gone.join()
    model.close()  # a closed model fails in the inference stage
    with pytest.raises(EdgeError, match=r"^infer stage"):
        Pipeline(model, [open_source("test://?width=96&height=64&frames=3")], []).run()


def test_slow_sink_does_not_grow_memory(model: Any) -> None:
    """A fast live 960x540 camera, a sink 10x slower: frames are dropped at the source, memory stays flat."""

    def rss_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    rss: list[float] = []

    class SlowSink(FailingSink):
        def write(self, frame: FrameResult) -> None:
            threading.Event().wait(0.03)  # the sink's own slowness (e.g. a slow disk)
            rss.append(rss_mb())

    p = Pipeline(
        model, [open_source("test://?width=960&height=540&fps=300")], [SlowSink(-1)], PipelineOptions(max_frames=60)
    )
    stats = p.run()
    assert stats.frames == 60 and stats.dropped > 60, "the live source dropped what the sink could not take"
    assert rss[-1] - rss[10] < 40, f"memory grew from {rss[10]:.0f} to {rss[-1]:.0f} MB"


@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_rtsp_pipeline_survives_a_server_restart(model: Any, tmp_path: Path) -> None:
    server = RtspServer().start()
    rec = Recorder()
    src = open_source(server.url + "?reconnect_min=0.1&reconnect_max=0.5&timeout=3")
    p = Pipeline(model, [src], [open_sink(f"jsonl://{tmp_path}/e.jsonl")], PipelineOptions(handle_signals=False), [rec])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            p.run()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    try:
        assert rec.wait(lambda: len(rec.frames) >= 5)
        server.stop()
        assert rec.wait(lambda: any(k == "reconnect" for k, _ in rec.events))
        n = len(rec.frames)
        server.start()
        assert rec.wait(lambda: any(k == "reconnected" for k, _ in rec.events))
        assert rec.wait(lambda: len(rec.frames) >= n + 5), "frames resume after the server restarts"
    finally:
        p.stop()
        t.join(30)
        server.stop()
    assert not errors and p.stats().reconnects >= 1
    assert len(read_events(tmp_path / "e.jsonl")) == len(rec.frames)
