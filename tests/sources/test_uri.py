"""Source URIs: schemes, targets and typed options; bad ones in the same table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.errors import ConfigError, SourceError
from edge.sources import open_source, parse_source_uri, redact
from edge.sources.gstreamer import has_element


@pytest.mark.parametrize(
    ("uri", "scheme", "target", "options", "error"),
    [
        ("csi://0?width=1280&height=720&fps=30", "csi", "0", {"width": 1280, "height": 720, "fps": 30.0}, None),
        ("csi://", "csi", "0", {}, None),
        ("v4l2:///dev/video1?format=MJPG&width=640", "v4l2", "/dev/video1", {"format": "MJPG", "width": 640}, None),
        (
            "rtsp://cam:8554/live?latency=100&channel=2",
            "rtsp",
            "rtsp://cam:8554/live?channel=2",
            {"latency": 100},
            None,
        ),
        ("rtsps://user:pw@cam/s", "rtsp", "rtsps://user:pw@cam/s", {}, None),
        (
            "rtsp://admin:s3cret@cam:554/h264?latency=50&x=1",
            "rtsp",
            "rtsp://admin:s3cret@cam:554/h264?x=1",
            {"latency": 50},
            None,
        ),
        (
            "rtsp://admin:s3cret@cam/h264?latency=soon",
            None,
            None,
            None,
            "rtsp://admin:***@cam/h264?latency=soon: option latency",
        ),
        ("file://clip.mp4", "file", "clip.mp4", {}, None),
        ("file:///abs/dir?loop=1", "file", "/abs/dir", {"loop": True}, None),
        ("clip.mp4", "file", "clip.mp4", {}, None),
        ("clip.mp4?loop=1&fps=3", "file", "clip.mp4", {"loop": True, "fps": 3.0}, None),  # as docs/pipeline.md
        ("dir/?frames=2", "file", "dir/", {"frames": 2}, None),
        ("gst://videotestsrc ! video/x-raw,width=64", "gst", "videotestsrc ! video/x-raw,width=64", {}, None),
        ("gst://videotestsrc num-buffers=3?live=true", "gst", "videotestsrc num-buffers=3", {"live": True}, None),
        ("test://?width=1920&height=1080&fps=30", "test", "", {"width": 1920, "height": 1080, "fps": 30.0}, None),
        ("test://?frames=5&pattern=noise", "test", "", {"frames": 5, "pattern": "noise"}, None),
        # errors
        ("http://cam/stream", None, None, None, "unsupported source scheme http://"),
        ("ftp://x", None, None, None, "unsupported source scheme ftp://"),
        ("test://?bogus=1", None, None, None, "unknown option 'bogus' for test://"),
        ("test://?width=wide", None, None, None, "option width='wide' is not a valid int"),
        ("test://?fps=-3", None, None, None, "option fps cannot be negative"),
        ("test://?live=maybe", None, None, None, "option live='maybe' is not a valid bool"),
        ("csi://0?format=MJPG", None, None, None, "unknown option 'format' for csi://"),
        ("csi://front", None, None, None, "expected a sensor number"),
        ("v4l2://", None, None, None, "expected a device"),
        ("file://", None, None, None, "expected a path"),
        ("file://x.mp4?api=magic", None, None, None, "api='magic' is not one of"),
        ("clip.mp4?lop=1", None, None, None, "unknown option 'lop' for file://"),
        ("", None, None, None, "expected a URI"),
        ("test://?pattern=plaid", None, None, None, "pattern='plaid' is not one of bars, noise"),
    ],
)
def test_parse(uri: str, scheme: str | None, target: str | None, options: dict | None, error: str | None) -> None:
    if error is not None:
        with pytest.raises(ConfigError, match=re.escape(error)) as info:
            open_source(uri)
        if uri:
            assert redact(uri) in str(info.value), "the error names the URI"
            assert "s3cret" not in str(info.value), "but never its password"
        return
    parsed = parse_source_uri(uri)
    assert (parsed.scheme, parsed.target, dict(parsed.options)) == (scheme, target, options)


@pytest.mark.parametrize(
    ("uri", "kind", "message"),
    [
        ("foo://bar", ConfigError, "unsupported source scheme foo://"),
        (
            "file:///no/such/clip.mp4",
            SourceError,
            "could not open file:///no/such/clip.mp4: /no/such/clip.mp4 not found",
        ),
        ("v4l2:///dev/video97", SourceError, "could not open v4l2:///dev/video97: /dev/video97 does not exist"),
        pytest.param(
            "csi://0",
            SourceError,
            "could not open csi://0: GStreamer element nvarguscamerasrc not found",
            marks=pytest.mark.skipif(has_element("nvarguscamerasrc"), reason="a Jetson: the CSI element exists"),
        ),
    ],
)
def test_unsupported_and_could_not_open_are_different_errors(uri: str, kind: type, message: str) -> None:
    with pytest.raises(kind) as info:
        open_source(uri).start()
    assert type(info.value) is kind
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rtsp://admin:s3cret@cam:554/live", "rtsp://admin:***@cam:554/live"),
        ("rtspsrc location=rtsp://u:p@10.0.0.2/s latency=200", "rtspsrc location=rtsp://u:***@10.0.0.2/s latency=200"),
        ("rtsp://cam/live?user=a", "rtsp://cam/live?user=a"),
        ("file:///data/clip.mp4", "file:///data/clip.mp4"),
    ],
)
def test_passwords_never_reach_names_or_logs(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_source_name_hides_the_password() -> None:
    src = open_source("rtsp://admin:s3cret@127.0.0.1:9/live?timeout=1")
    assert src.uri == "rtsp://admin:***@127.0.0.1:9/live?timeout=1"


def test_a_bare_path_whose_name_holds_a_question_mark_stays_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "odd?name.mp4").write_bytes(b"")
    parsed = parse_source_uri("odd?name.mp4")
    assert (parsed.scheme, parsed.target, dict(parsed.options)) == ("file", "odd?name.mp4", {})
