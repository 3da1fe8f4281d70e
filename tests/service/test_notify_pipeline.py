"""sd_notify from a real pipeline: STOPPING=1 goes out when draining starts, not after the drain ends."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2

from edge.observer import FrameResult
from edge.pipeline import Pipeline, PipelineOptions
from edge.runtime.model import Model
from edge.service.notify import NotifyObserver
from edge.sources import open_source
from tests.runtime.bundles import photo
from tests.service.test_notify import NotifySocket


class GateSink:
    """A sink that, once ``hold`` is set, blocks on its next frame until ``release`` is set: frames stay in flight."""

    uri = "gate://"

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.release = threading.Event()
        self.blocked = threading.Event()
        self.written = 0

    def open(self) -> None:
        pass

    def write(self, frame: FrameResult) -> None:
        if self.hold.is_set():
            self.blocked.set()
            self.release.wait(30)
        self.written += 1

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return self.uri


def test_stopping_is_sent_when_draining_starts(face_model: Model, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "astronaut.png"), photo("astronaut"))
    notify = NotifySocket(str(tmp_path / "notify"))
    obs = NotifyObserver.from_env({"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"})
    gate = GateSink()
    pipeline = Pipeline(
        face_model,
        [open_source(f"file://{photos}?loop=true&fps=20")],
        [gate],
        PipelineOptions(handle_signals=False),
        observers=[obs],
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
        notify.recv_until("READY", timeout=30)
        notify.recv_until("WATCHDOG", timeout=30)  # frames flow
        gate.hold.set()
        assert gate.blocked.wait(30), "the sink never got a frame to hold"

        pipeline.stop("SIGTERM")  # what the SIGTERM handler calls
        stopping, before = notify.recv_until("STOPPING", timeout=10)
        # The frame held in the sink is still in flight: the drain has not finished, yet systemd knows.
        assert thread.is_alive() and not gate.release.is_set()
        assert stopping["STOPPING"] == "1"
        assert stopping["STATUS"].startswith("stopping: SIGTERM: draining ")
        assert all("STOPPING" not in m for m in before)
    finally:
        gate.release.set()
        thread.join(30)
    assert not thread.is_alive() and not errors, errors
    # The drain wrote the frame that was in flight; on_stop sends a final STATUS, and STOPPING only once.
    assert gate.written >= 1
    final, after = notify.recv_until("STATUS", timeout=5, value_prefix="stopped:")
    assert "STOPPING" not in final and all("STOPPING" not in m for m in after)
    assert notify.recv(timeout=0.5) is None  # the ticker is gone
    obs.close()
    notify.close()


def test_a_pipeline_that_fails_still_sends_stopping(face_model: Model, tmp_path: Path) -> None:
    """No drain on an error (no ``stopping`` event): on_stop sends STOPPING=1 itself."""
    notify = NotifySocket(str(tmp_path / "notify"))
    obs = NotifyObserver.from_env({"NOTIFY_SOCKET": notify.address})

    class Broken(GateSink):
        def write(self, frame: FrameResult) -> None:
            raise OSError("disk full")

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "astronaut.png"), photo("astronaut"))
    pipeline = Pipeline(
        face_model,
        [open_source(f"file://{photos}?loop=true&fps=20")],
        [Broken()],
        PipelineOptions(handle_signals=False),
        observers=[obs],
    )
    try:
        pipeline.run()
    except Exception as exc:
        assert "disk full" in str(exc)
    else:
        raise AssertionError("the broken sink did not stop the pipeline")
    stopping, _ = notify.recv_until("STOPPING", timeout=5)
    assert stopping["STATUS"].startswith("stopping: ")
    obs.close()
    notify.close()
