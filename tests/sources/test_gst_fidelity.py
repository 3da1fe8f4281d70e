"""Pipelines as GStreamer itself reads them, credentials kept out of messages, and gst-launch stopped with EOS.

Descriptions are parsed by the real ``Gst.parse_launch`` (Debian's /usr/bin/python3 with python3-gi,
the same parser OpenCV's GStreamer backend calls); gst-launch-1.0 runs for real on videotestsrc.
Jetson-only elements (nvv4l2decoder, nvvidconv, nvarguscamerasrc) cannot be instantiated here, so those
pipelines are checked as text.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
from pathlib import Path

import pytest

import edge.sources as sources
from edge.errors import SourceError
from edge.sources import appsink_description, open_source, parse_source_uri, rtsp_pipeline, v4l2_pipeline
from edge.sources.gstreamer import GstLaunchReader, bgr_tail, gst_quote
from tests.helpers.rtsp_server import RtspServer, available

SYSTEM_PYTHON = "/usr/bin/python3"
URL = "rtsp://admin:s3cr3t@127.0.0.1:8554/Streaming/Channels/101?channel=1&subtype=0"

PARSE = """
import json, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
pipeline = Gst.parse_launch(sys.argv[1])
out = {}
for name, prop in json.loads(sys.argv[2]).items():
    out[name] = pipeline.get_by_name(name).get_property(prop)
print(json.dumps(out))
"""


def gst_parse(description: str, props: dict[str, str]) -> dict[str, object]:
    """Property values after the real ``Gst.parse_launch`` read ``description``."""
    probe = "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst"
    if not Path(SYSTEM_PYTHON).is_file() or subprocess.run([SYSTEM_PYTHON, "-c", probe]).returncode != 0:
        pytest.skip("Debian's python3-gi with GStreamer is not installed (scripts/setup.sh installs it)")
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-c", PARSE, description, json.dumps(props)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_rtsp_query_string_reaches_rtspsrc_whole_through_gst_parse_launch() -> None:
    uri = parse_source_uri(URL + "&latency=100")  # latency is the kit's option, the rest is the camera's
    pipeline, rest = rtsp_pipeline(uri, jetson=False)
    desc = appsink_description(pipeline, bgr_tail(rest.int_opt("width"), rest.int_opt("height")))
    assert "'" not in desc
    assert gst_parse(desc.replace("rtspsrc ", "rtspsrc name=cam ", 1), {"cam": "location"}) == {"cam": URL}
    # gst-launch gets the same description split into arguments: one argument, no quotes left.
    args = GstLaunchReader(pipeline).command(9)
    assert f"location={URL}" in args


def test_quoting_survives_quotes_and_backslashes() -> None:
    odd = 'rtsp://cam/a"b\\c?x=1&y=2'
    assert gst_parse(f"rtspsrc name=cam location={gst_quote(odd)} ! fakesink", {"cam": "location"}) == {"cam": odd}
    assert shlex.split(f"location={gst_quote(odd)}") == [f"location={odd}"]


def test_credentials_never_reach_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    src = open_source("rtsp://admin:s3cr3t@127.0.0.1:9/cam?api=opencv&reconnect=false&timeout=2")
    with pytest.raises(SourceError) as err:
        src.start()
    assert "s3cr3t" not in str(err.value) and "admin:***@127.0.0.1:9" in str(err.value)
    assert "s3cr3t" not in caplog.text
    assert sources.redact('rtspsrc location="rtsp://u:pw@h/x?a=1" user-id=u user-pw="p w" ! x') == (
        'rtspsrc location="rtsp://u:***@h/x?a=1" user-id=u user-pw=*** ! x'
    )


def test_jetson_rtsp_scales_in_nvvidconv_not_on_the_cpu() -> None:
    uri = parse_source_uri("rtsp://cam/live?width=640&height=360&codec=h265")
    pipeline, rest = rtsp_pipeline(uri, jetson=True)
    assert pipeline.endswith(
        "! rtph265depay ! h265parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx,width=640,height=360"
    )
    tail = bgr_tail(rest.int_opt("width"), rest.int_opt("height"))
    assert "videoscale" not in tail and tail == "videoconvert ! video/x-raw,format=BGR"
    pipeline, rest = rtsp_pipeline(uri, jetson=False)  # a desktop decodes and scales in software
    assert "avdec_h265" in pipeline and "videoscale" in bgr_tail(rest.int_opt("width"), rest.int_opt("height"))


def test_v4l2_mjpg_is_decoded_by_the_jetsons_jpeg_decoder() -> None:
    jetson = v4l2_pipeline("/dev/video0", 1280, 720, 30, mjpg=True, jetson=True)
    assert jetson == (
        'v4l2src device="/dev/video0" ! image/jpeg,width=1280,height=720,framerate=30/1 '
        "! nvv4l2decoder mjpeg=1 ! nvvidconv ! video/x-raw,format=BGRx"
    )
    desktop = v4l2_pipeline("/dev/video0", 1280, 720, 30, mjpg=True, jetson=False)
    parsed = gst_parse(desktop.replace("v4l2src ", "v4l2src name=cam ") + " ! fakesink", {"cam": "device"})
    assert parsed == {"cam": "/dev/video0"} and desktop.endswith("! jpegdec")


def test_csi_on_the_opencv_path_needs_no_gst_inspect(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = sources.shutil.which
    monkeypatch.setattr(sources.shutil, "which", lambda name: None if name == "gst-inspect-1.0" else real_which(name))
    monkeypatch.setattr(sources, "opencv_has_gstreamer", lambda: True)  # JetPack's OpenCV, without gstreamer1.0-tools
    src = open_source("csi://0?width=1920&height=1080&fps=30")
    reader = src._make_reader()
    assert reader.description == "OpenCV's GStreamer backend"
    assert str(reader.target).startswith("nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920")
    monkeypatch.setattr(sources, "opencv_has_gstreamer", lambda: False)
    with pytest.raises(SourceError, match="neither OpenCV with GStreamer nor gst-launch-1.0 is here"):
        open_source("csi://0")


def test_gst_launch_is_stopped_with_eos_and_reaches_null() -> None:
    reader = GstLaunchReader("videotestsrc is-live=true ! video/x-raw,width=64,height=48,framerate=30/1")
    reader.pipeline += " ! " + bgr_tail()
    reader.open()
    try:
        frame = reader.read()
        assert frame is not None and frame.shape == (48, 64, 3)
    finally:
        reader.close()
    assert reader.stopped_by == "eos" and reader.returncode == 0, reader.output
    assert any("EOS on shutdown enabled" in line for line in reader.output), reader.output
    assert any("Setting pipeline to NULL" in line for line in reader.output), reader.output


@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_rtsp_url_with_a_query_string_and_credentials_opens() -> None:
    """A real RTSP server (gst-rtsp-server); cameras put their channel in the query, as here."""
    with RtspServer() as server:
        url = server.url.replace("rtsp://", "rtsp://admin:s3cr3t@") + "?channel=1&subtype=0&reconnect=false"
        src = open_source(url).start()
        try:
            frame = src.read(timeout=20)
        finally:
            src.stop()
    assert frame is not None and frame.image.shape == (240, 320, 3)
    assert "s3cr3t" not in src.uri and "s3cr3t" not in frame.source


def test_gst_launch_that_cannot_finish_eos_is_terminated() -> None:
    """Buffers held for 5 s each (identity sleep-time) keep EOS from arriving: SIGTERM follows after stop_timeout.

    The queue holds the buffers videotestsrc made before the EOS, in order, so EOS waits behind them.
    """
    reader = GstLaunchReader(
        "videotestsrc ! video/x-raw,width=32,height=24,framerate=30/1 ! queue ! identity sleep-time=5000000 ! "
        + bgr_tail(),
        stop_timeout=0.5,
    )
    reader.open()
    reader.close()
    assert reader.stopped_by == "terminate" and reader.returncode == -15, (reader.output, list(reader._stderr))
