"""Sources against real parts: OpenCV video files, images, gst-launch-1.0 (videotestsrc), a real RTSP server."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, SourceError
from edge.sources import Frame, Source, open_source
from edge.sources.gstreamer import ARGUS_FIX, explain_gst_error
from tests.helpers.media import write_video
from tests.helpers.rtsp_server import RtspServer, available


def drain(source: Source, timeout: float = 10.0) -> list[Frame]:
    frames = []
    while (frame := source.read(timeout=timeout)) is not None:
        frames.append(frame)
    return frames


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, dict]] = []
        self.cond = threading.Condition()

    def __call__(self, kind: str, message: str, data: dict) -> None:
        with self.cond:
            self.items.append((kind, message, data))
            self.cond.notify_all()

    def kinds(self) -> list[str]:
        return [k for k, _, _ in self.items]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 30.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.kinds().count(kind) >= count, timeout)


def test_video_file_delivers_every_frame_in_order(video: Path) -> None:
    with open_source(f"file://{video}") as src:
        frames = drain(src)
    assert [f.frame_id for f in frames] == list(range(25))
    levels = [float(f.image.mean()) for f in frames]
    assert levels == sorted(levels) and levels[-1] - levels[0] > 150, "frames arrive in file order"
    assert src.dropped == 0 and src.state == "finished"
    assert all(f.capture_time > 0 and f.source == f"file://{video}" for f in frames)


def test_file_source_waits_for_a_slow_consumer(video: Path) -> None:
    with open_source(str(video)) as src:
        frames = []
        while (frame := src.read(timeout=10)) is not None:
            frames.append(frame)
            time.sleep(0.01)  # a slow consumer: the file source must not drop
    assert len(frames) == 25 and src.dropped == 0


def test_video_file_through_gst_launch(video: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edge.sources"), open_source(f"file://{video}?api=gst-launch") as src:
        frames = drain(src)
    assert len(frames) == 25 and frames[0].image.shape == (120, 160, 3)
    levels = [float(f.image.mean()) for f in frames]
    assert levels == sorted(levels), "every frame, in order, through filesrc ! decodebin"
    assert "gst-launch-1.0 subprocess" in caplog.text


def test_video_file_resized_and_looped(video: Path) -> None:
    with open_source(f"file://{video}?width=80&frames=40&loop=true") as src:
        frames = drain(src)
    assert len(frames) == 40 and frames[0].image.shape == (60, 80, 3)
    assert frames[25].image.mean() < frames[24].image.mean(), "the loop restarts at the first frame"


def test_images_and_directory(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((40, 50), 50 * i, np.uint8))  # grayscale files
    (tmp_path / "notes.txt").write_text("not an image")
    with open_source(str(tmp_path)) as src:
        frames = drain(src)
    assert [f.image.shape for f in frames] == [(40, 50, 3)] * 3
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100]
    with open_source(f"file://{tmp_path / 'img1.png'}") as src:
        assert len(drain(src)) == 1


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("file://{tmp}/empty", "has no images"),
        ("file://{tmp}/broken.mp4", "OpenCV cannot decode"),
        ("gst://nosuchelement ! fakesink", 'no element "nosuchelement"'),
        ("gst://videotestsrc ! video/x-raw,format=NOPE", "could not open"),
        ("test://?width=0", "positive width"),
    ],
)
def test_could_not_open(tmp_path: Path, uri: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video")
    uri = uri.format(tmp=tmp_path)
    with pytest.raises(SourceError) as info:
        open_source(uri).start()
    assert str(info.value).startswith(f"could not open {uri}") and message in str(info.value)


def test_gst_pipeline_through_gst_launch(caplog: pytest.LogCaptureFixture) -> None:
    uri = "gst://videotestsrc num-buffers=12 pattern=ball ! video/x-raw,width=322,height=96"
    with caplog.at_level(logging.INFO, logger="edge.sources"), open_source(uri) as src:
        frames = drain(src)
    assert len(frames) == 12 and frames[0].image.shape == (96, 322, 3), "odd widths: rows padded to 4 bytes"
    assert frames[0].image.dtype == np.uint8 and frames[0].image.std() > 10
    assert "gst-launch-1.0 subprocess" in caplog.text, "the log says which GStreamer path is used"


def test_synthetic_live_source_keeps_only_the_newest_frame() -> None:
    with open_source("test://?width=64&height=48&fps=400&frames=120") as src:
        got = []
        while (frame := src.read(timeout=5)) is not None:
            got.append(frame)
            time.sleep(0.02)  # a consumer much slower than the camera
            assert len(src._buffer) <= 1
    ids = [f.frame_id for f in got]
    assert ids == sorted(ids) and len(ids) < 120
    assert src.dropped == 120 - len(got), "every frame not taken is counted as dropped"


def test_live_gst_source_reconnects_with_backoff() -> None:
    events = Events()
    uri = (
        "gst://videotestsrc num-buffers=4 ! video/x-raw,width=32,height=24?live=1&reconnect_min=0.05&reconnect_max=0.2"
    )
    src = open_source(uri).start(events)
    try:
        assert events.wait_for("reconnected", 2), events.kinds()
        frames = [src.read(timeout=10) for _ in range(6)]
    finally:
        src.stop()
    assert all(f is not None for f in frames)
    assert events.kinds()[:3] == ["disconnect", "reconnect", "reconnected"]
    assert src.reconnects >= 2
    delays = [d["delay_s"] for k, _, d in events.items if k == "reconnect"]
    assert delays[0] == pytest.approx(0.05)


def test_reconnect_backoff_grows_while_the_device_is_away(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "cam.avi", 3)
    events = Events()
    src = open_source(f"file://{clip}?live=1&reconnect=1&reconnect_min=0.02&reconnect_max=0.08").start(events)
    try:
        assert events.wait_for("reconnected")
        clip.unlink()  # the "camera" goes away: attempts fail and back off
        assert events.wait_for("reconnect", 5)
        delays = [d["delay_s"] for k, _, d in events.items if k == "reconnect"]
        write_video(clip, 3)
        assert events.wait_for("reconnected", 2)
    finally:
        src.stop()
    assert delays[1:5] == [0.02, 0.04, 0.08, 0.08], "exponential backoff, capped at reconnect_max"


def test_argus_failure_is_explained_with_the_fix() -> None:
    # Hardware boundary: nvarguscamerasrc exists only on a Jetson, so its error text is given here.
    stderr = (
        "Error generated. /dvs/git/dirty/git-master_linux/multimedia/nvgstreamer/gst-nvarguscamera/"
        "gstnvarguscamerasrc.cpp, execute:805 Failed to create CaptureSession\n"
        "ERROR: from element /GstPipeline:pipeline0/GstNvArgusCameraSrc:nvarguscamerasrc0: Internal data stream error."
    )
    assert explain_gst_error(stderr) == ARGUS_FIX
    assert "systemctl restart nvargus-daemon" in ARGUS_FIX
    plain = "ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Could not open resource for reading."
    assert explain_gst_error(plain) == "rtspsrc0: Could not open resource for reading."


@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_rtsp_source_reconnects_when_the_server_restarts() -> None:
    events = Events()
    server = RtspServer().start()
    src = open_source(server.url + "?reconnect_min=0.1&reconnect_max=0.5&timeout=3").start(events)
    try:
        first = [src.read(timeout=10) for _ in range(5)]
        assert all(f is not None and f.image.shape == (240, 320, 3) for f in first)
        server.stop()
        assert events.wait_for("disconnect", timeout=15)
        server.start()
        assert events.wait_for("reconnected", timeout=30), events.kinds()
        before = src.captured
        after = [src.read(timeout=10) for _ in range(5)]
    finally:
        src.stop()
        server.stop()
    assert all(f is not None for f in after)
    assert max(f.frame_id for f in after if f is not None) >= before, "frames resume after the restart"
    assert src.reconnects >= 1


def test_unknown_scheme_is_a_config_error_not_a_source_error() -> None:
    with pytest.raises(ConfigError) as info:
        open_source("webcam://0")
    assert not isinstance(info.value, SourceError)
