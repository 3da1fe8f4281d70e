"""Sinks against real parts: files read back with json/OpenCV, the MJPEG preview fetched over real HTTP."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, SourceError
from edge.observer import FrameResult
from edge.results import Classifications, Detections
from edge.sinks import DisplaySink, JsonlSink, MjpegSink, VideoSink, open_sink
from edge.sinks.display import display_problem


def frame(i: int, size: tuple[int, int] = (240, 320)) -> FrameResult:
    dets = Detections(
        np.array([[10 + i, 20, 110 + i, 140]], np.float32), np.array([0.9], np.float32), np.array([0]), ("face",)
    )
    image = np.full((*size, 3), 90, np.uint8)
    return FrameResult(i, "test://", 1000.0 + i / 30, 1000.05 + i / 30, dets, image)


@pytest.mark.parametrize(
    ("uri", "kind", "error"),
    [
        ("jsonl://events.jsonl", JsonlSink, None),
        ("jsonl://-", JsonlSink, None),
        ("events.jsonl", JsonlSink, None),
        ("file://out.mp4", VideoSink, None),
        ("file://out.avi?fps=15", VideoSink, None),
        ("out.mp4", VideoSink, None),
        ("mjpeg://127.0.0.1:8080", MjpegSink, None),
        ("mjpeg://:0?quality=60", MjpegSink, None),
        ("mjpeg://[::1]:8080", MjpegSink, None),
        ("display://", DisplaySink, None),
        ("rtmp://server/live", None, "unsupported sink scheme rtmp://"),
        ("notes.txt", None, "unsupported sink 'notes.txt'"),
        ("file://out.gif", None, "unsupported video type"),
        ("file://out.mp4?bitrate=5", None, "unknown option 'bitrate'"),
        ("file://out.mp4?fps=0", None, "option fps must be > 0"),
        ("mjpeg://localhost", None, "expected mjpeg://HOST:PORT"),
        ("jsonl://", None, "expected a path"),
    ],
)
def test_open_sink(uri: str, kind: type | None, error: str | None) -> None:
    if error is not None:
        with pytest.raises(ConfigError, match=error):
            open_sink(uri)
        return
    assert type(open_sink(uri)) is kind


def test_jsonl_one_line_per_frame(tmp_path: Path) -> None:
    sink = open_sink(f"jsonl://{tmp_path}/sub/events.jsonl")
    sink.open()
    for i in range(3):
        sink.write(frame(i))
    sink.write(
        FrameResult(3, "cam", 5.0, 5.5, Classifications(np.array([2]), np.array([0.7], np.float32), ("a", "b", "c")))
    )
    sink.close()
    lines = [json.loads(line) for line in (tmp_path / "sub/events.jsonl").read_text().splitlines()]
    assert [e["frame_id"] for e in lines] == [0, 1, 2, 3]
    first = lines[0]
    assert first["source"] == "test://" and first["capture_time"] == 1000.0 and first["latency_ms"] == 50.0
    assert first["detections"] == [{"box": [10.0, 20.0, 110.0, 140.0], "score": 0.9, "class_id": 0, "label": "face"}]
    assert lines[3]["classes"] == [{"class_id": 2, "label": "c", "score": 0.7}]


def test_jsonl_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = open_sink("jsonl://-")
    sink.open()
    sink.write(frame(7))
    sink.close()
    assert json.loads(capsys.readouterr().out)["frame_id"] == 7


def test_jsonl_into_a_directory_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a directory"):
        open_sink(f"jsonl://{tmp_path}").open()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("jsonl://{tmp}/dir", "{tmp}/dir is a directory; give a file such as events.jsonl"),
        ("jsonl://{tmp}/afile/sub/events.jsonl", "{tmp}/afile is not a directory"),
        ("file://{tmp}/dir.mp4", "{tmp}/dir.mp4 is a directory; give a file such as out.mp4"),
        ("file://{tmp}/afile/out.mp4", "{tmp}/afile is not a directory"),
    ],
)
def test_file_sinks_that_cannot_be_written_fail_at_open(tmp_path: Path, uri: str, message: str) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir.mp4").mkdir()
    (tmp_path / "afile").write_text("")
    uri, message = uri.format(tmp=tmp_path), message.format(tmp=tmp_path)
    with pytest.raises(SourceError) as info:
        open_sink(uri).open()
    assert str(info.value) == f"could not open sink {uri}: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dir", "dir.mp4"], "nothing created"
    assert not [f for d in ("dir", "dir.mp4") for f in (tmp_path / d).iterdir()]


@pytest.mark.parametrize("uri", ["jsonl://{tmp}/new/events.jsonl", "file://{tmp}/new/out.mp4"])
def test_file_sinks_create_their_file_at_the_first_frame(tmp_path: Path, uri: str) -> None:
    """A run that fails between opening the sinks and the first frame leaves nothing on disk."""
    sink = open_sink(uri.format(tmp=tmp_path))
    sink.open()
    assert not (tmp_path / "new").exists()
    sink.write(frame(0))
    sink.close()
    assert [p.name for p in (tmp_path / "new").iterdir()] == [Path(uri).name]


def test_annotated_video_is_written_atomically(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    sink = open_sink(f"file://{out}?fps=10")
    sink.open()
    for i in range(12):
        sink.write(frame(i))
        assert not out.exists(), "the video appears only when complete"
    sink.close()
    cap = cv2.VideoCapture(str(out))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = cap.get(cv2.CAP_PROP_FPS)
    ok, image = cap.read()
    cap.release()
    assert ok and image.shape == (240, 320, 3) and count == 12 and fps == pytest.approx(10.0)
    box_edge = image[20:140, 10:14].astype(int)
    assert np.abs(box_edge - 90).max() > 40, "the box is drawn on the frame"
    assert np.abs(image[2:12, 2:40].astype(int) - 90).max() > 40, "the fps line is drawn in the corner"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"], "no temp file left behind"


def test_mjpeg_preview_in_a_real_http_client() -> None:
    sink = open_sink("mjpeg://127.0.0.1:0")
    assert isinstance(sink, MjpegSink)
    sink.open()
    try:
        base = f"http://127.0.0.1:{sink.port}"
        page = urllib.request.urlopen(base + "/", timeout=5).read()
        assert b"/stream.mjpg" in page
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/snapshot.jpg", timeout=5)
        assert info.value.code == 503
        conn = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
        conn.request("GET", "/stream.mjpg")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type").startswith("multipart/x-mixed-replace")
        boundary = resp.getheader("Content-Type").split("boundary=")[1].encode()
        deadline = time.monotonic() + 10
        while sink.clients == 0 and time.monotonic() < deadline:
            sink.write(frame(0))  # nobody watching yet: nothing is encoded
        images = []
        i = 1
        while len(images) < 2:
            sink.write(frame(i))
            i += 1
            line = resp.fp.readline()
            if line.strip() != b"--" + boundary:
                continue
            headers = {}
            while (h := resp.fp.readline().strip()) != b"":
                k, v = h.decode().split(":", 1)
                headers[k.lower()] = v.strip()
            assert headers["content-type"] == "image/jpeg"
            data = resp.fp.read(int(headers["content-length"]))
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (240, 320, 3)
            images.append(image)
        conn.close()
        snap = urllib.request.urlopen(base + "/snapshot.jpg", timeout=5).read()
        assert cv2.imdecode(np.frombuffer(snap, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
    finally:
        sink.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/", timeout=2)


def test_mjpeg_port_in_use_is_a_clear_error() -> None:
    first = open_sink("mjpeg://127.0.0.1:0")
    first.open()
    try:
        second = open_sink(f"mjpeg://127.0.0.1:{first.port}")  # type: ignore[attr-defined]
        with pytest.raises(SourceError, match="cannot listen on 127.0.0.1"):
            second.open()
    finally:
        first.close()


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, "no display here"),
        (
            {"DISPLAY": ":0"},
            "this OpenCV has no GUI" if "NONE" in cv2.getBuildInformation().split("GUI:")[1][:40] else None,
        ),
    ],
)
def test_display_where_none_exists(env: dict[str, str], problem: str | None) -> None:
    found = display_problem(env)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_display_sink_open_fails_clearly_without_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SourceError, match=r"could not open sink display://: no display here .* mjpeg://"):
        open_sink("display://").open()
