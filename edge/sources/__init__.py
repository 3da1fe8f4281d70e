"""Video sources by URI: ``csi://``, ``v4l2://``, ``rtsp://``, ``file://`` (video, image or directory),
``gst://`` (a raw GStreamer pipeline) and ``test://`` (synthetic frames).

    source = open_source("rtsp://camera.local:8554/stream?latency=100")
    source.start(on_event)            # SourceError "could not open ..." naming the URI
    frame = source.read(timeout=1.0)  # Frame(frame_id, source, capture_time, image) or None
    source.stop()

An unsupported scheme is a :class:`~edge.errors.ConfigError`; a device that cannot be opened is a
:class:`~edge.errors.SourceError`; both name the URI. See ``docs/pipeline.md`` for every option.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from edge.errors import ConfigError, SourceError
from edge.sources.base import Frame, Reader, Source
from edge.sources.files import ImagesReader, SyntheticReader, VideoFileReader
from edge.sources.gstreamer import (
    GstLaunchReader,
    OpenCVReader,
    bgr_tail,
    gst_launch_path,
    gst_quote,
    has_element,
    is_jetson,
    opencv_has_gstreamer,
)
from edge.sources.uri import SCHEMES, SourceURI, is_image_path, parse_source_uri, redact

__all__ = ["SCHEMES", "Frame", "Reader", "Source", "SourceURI", "open_source", "parse_source_uri", "redact"]

log = logging.getLogger("edge.sources")


def appsink_description(pipeline: str, tail: str) -> str:
    """The description OpenCV's GStreamer backend hands to ``gst_parse_launch`` (ends in its appsink)."""
    return f"{pipeline} ! {tail} ! appsink drop=true max-buffers=1 sync=false"


def _gst_reader(uri: SourceURI, pipeline: str, open_timeout: float, read_timeout: float | None) -> Callable[[], Reader]:
    """A reader for a GStreamer pipeline ending in raw video: OpenCV's GStreamer backend or gst-launch."""
    api = uri.str_opt("api", "auto")
    tail = bgr_tail(uri.int_opt("width"), uri.int_opt("height"), uri.float_opt("fps") if uri.scheme == "gst" else None)
    if api == "opencv" or (api == "auto" and opencv_has_gstreamer()):
        if not opencv_has_gstreamer():
            raise SourceError(f"could not open {uri.uri}: this OpenCV was built without GStreamer; use api=gst-launch")
        import cv2

        desc = appsink_description(pipeline, tail)
        return lambda: OpenCVReader(desc, cv2.CAP_GSTREAMER, "OpenCV's GStreamer backend")
    if gst_launch_path() is None:
        raise SourceError(
            f"could not open {uri.uri}: gst-launch-1.0 not found and OpenCV has no GStreamer; "
            "install gstreamer1.0-tools and gstreamer1.0-plugins-good"
        )
    return lambda: GstLaunchReader(f"{pipeline} ! {tail}", open_timeout, read_timeout)


def _need_element(uri: SourceURI, element: str, why: str) -> None:
    """Refuse early when gst-inspect-1.0 says ``element`` is missing; without gst-inspect (JetPack's OpenCV
    with GStreamer needs no gstreamer1.0-tools) the open itself reports a missing element."""
    if shutil.which("gst-inspect-1.0") is None:
        if opencv_has_gstreamer() and uri.str_opt("api", "auto") != "gst-launch":
            return
        raise SourceError(
            f"could not open {uri.uri}: neither OpenCV with GStreamer nor gst-launch-1.0 is here ({why}); "
            "install gstreamer1.0-tools or use JetPack's OpenCV"
        )
    if not has_element(element):
        raise SourceError(f"could not open {uri.uri}: GStreamer element {element} not found ({why})")


def _without(uri: SourceURI, *keys: str) -> SourceURI:
    return SourceURI(uri.uri, uri.scheme, uri.target, {k: v for k, v in uri.options.items() if k not in keys})


def _nvvidconv_caps(uri: SourceURI) -> str:
    """``nvvidconv``'s output caps: BGRx, scaled in the hardware when width and height are asked for."""
    w, h = uri.int_opt("width"), uri.int_opt("height")
    size = f",width={w},height={h}" if w and h else ""
    return f"nvvidconv ! video/x-raw,format=BGRx{size}"


def _csi(uri: SourceURI) -> tuple[Callable[[], Reader], bool]:
    _need_element(uri, "nvarguscamerasrc", "csi:// needs a Jetson with JetPack's GStreamer plugins")
    w, h = uri.int_opt("width", 1280), uri.int_opt("height", 720)
    fps = round(uri.float_opt("fps", 30.0) or 30.0)
    pipeline = (
        f"nvarguscamerasrc sensor-id={uri.target} ! video/x-raw(memory:NVMM),width={w},height={h},framerate={fps}/1 "
        f"! nvvidconv flip-method={uri.int_opt('flip', 0)} ! video/x-raw,format=BGRx"
    )
    return _gst_reader(_without(uri, "width", "height"), pipeline, uri.float_opt("timeout", 10.0) or 10.0, 5.0), True


def _v4l2(uri: SourceURI) -> tuple[Callable[[], Reader], bool]:
    device = uri.target
    if not Path(device).exists():
        raise SourceError(
            f"could not open {uri.uri}: {device} does not exist (list cameras with v4l2-ctl --list-devices)"
        )
    w, h, fps, fmt = uri.int_opt("width"), uri.int_opt("height"), uri.float_opt("fps"), uri.str_opt("format")
    api = uri.str_opt("api", "auto")
    mjpg = bool(fmt and fmt.upper() in ("MJPG", "MJPEG"))
    # On a Jetson, MJPG is decoded by the hardware JPEG decoder (nvv4l2decoder mjpeg=1) through GStreamer.
    hw_jpeg = mjpg and api != "opencv" and is_jetson() and (gst_launch_path() is not None or opencv_has_gstreamer())
    if api == "gst-launch" or hw_jpeg:
        pipeline = v4l2_pipeline(device, w, h, fps, mjpg, jetson=hw_jpeg)
        plain = SourceURI(uri.uri, uri.scheme, uri.target, {"api": api})
        return _gst_reader(plain, pipeline, 10.0, 5.0), True
    import cv2

    props: dict[int, float] = {}
    if fmt:
        props[cv2.CAP_PROP_FOURCC] = cv2.VideoWriter.fourcc(*fmt.upper()[:4].ljust(4))
    if w:
        props[cv2.CAP_PROP_FRAME_WIDTH] = w
    if h:
        props[cv2.CAP_PROP_FRAME_HEIGHT] = h
    if fps:
        props[cv2.CAP_PROP_FPS] = fps
    props[cv2.CAP_PROP_BUFFERSIZE] = 1
    return lambda: OpenCVReader(device, cv2.CAP_V4L2, "OpenCV V4L2", props), True


def v4l2_pipeline(device: str, w: int | None, h: int | None, fps: float | None, mjpg: bool, jetson: bool) -> str:
    """``v4l2src`` with the camera's caps, then a JPEG decoder for MJPG: the Jetson's (``nvv4l2decoder
    mjpeg=1``, then ``nvvidconv``) or libjpeg's (``jpegdec``)."""
    caps = "image/jpeg" if mjpg else "video/x-raw"
    caps += "".join(f",{k}={v}" for k, v in (("width", w), ("height", h)) if v)
    caps += f",framerate={round(fps)}/1" if fps else ""
    decode = ""
    if mjpg:
        decode = " ! nvv4l2decoder mjpeg=1 ! nvvidconv ! video/x-raw,format=BGRx" if jetson else " ! jpegdec"
    return f"v4l2src device={gst_quote(device)} ! {caps}{decode}"


def rtsp_pipeline(uri: SourceURI, jetson: bool) -> tuple[str, SourceURI]:
    """The RTSP pipeline up to raw video, and the options left for the common tail.

    The camera URL (query string and credentials included) is one double-quoted property value that
    both ``gst_parse_launch`` (OpenCV's backend) and :func:`shlex.split` (gst-launch) take whole. On a
    Jetson, ``nvv4l2decoder`` decodes and ``nvvidconv`` scales to width x height in the hardware.
    """
    codec = (uri.str_opt("codec", "h264") or "h264").lower()
    if codec not in ("h264", "h265"):
        raise SourceError(f"could not open {uri.uri}: codec {codec!r} is not one of h264, h265")
    depay = "rtph264depay ! h264parse" if codec == "h264" else "rtph265depay ! h265parse"
    rest = uri
    if jetson:
        decode = f"nvv4l2decoder ! {_nvvidconv_caps(uri)}"
        rest = _without(uri, "width", "height")
    else:
        decode = "avdec_h264" if codec == "h264" else "avdec_h265"
    protocols = uri.str_opt("protocols", "tcp")
    pipeline = (
        f"rtspsrc location={gst_quote(uri.target)} latency={uri.int_opt('latency', 200)} protocols={protocols} "
        f"! {depay} ! {decode}"
    )
    return pipeline, rest


def _rtsp(uri: SourceURI) -> tuple[Callable[[], Reader], bool]:
    codec = (uri.str_opt("codec", "h264") or "h264").lower()
    if codec not in ("h264", "h265"):
        raise SourceError(f"could not open {uri.uri}: codec {codec!r} is not one of h264, h265")
    api = uri.str_opt("api", "auto")
    timeout = uri.float_opt("timeout", 5.0) or 5.0
    if api == "opencv" or (api == "auto" and gst_launch_path() is None and not opencv_has_gstreamer()):
        import cv2

        log.info("source %s: no GStreamer here, decoding with OpenCV's FFmpeg (software)", uri.uri)
        return lambda: OpenCVReader(uri.target, cv2.CAP_FFMPEG, "OpenCV FFmpeg (software decode)"), True
    pipeline, rest = rtsp_pipeline(uri, is_jetson())
    return _gst_reader(rest, pipeline, max(timeout, 10.0), timeout), True


def _file(uri: SourceURI) -> tuple[Callable[[], Reader], bool]:
    path = uri.target
    w, h = uri.int_opt("width"), uri.int_opt("height")
    if not Path(path).exists():
        raise SourceError(f"could not open {uri.uri}: {path} not found")
    if Path(path).is_dir() or is_image_path(path):
        return lambda: ImagesReader(path, w, h), False
    if uri.str_opt("api", "auto") == "gst-launch":
        return _gst_reader(uri, f"filesrc location={gst_quote(path)} ! decodebin", 10.0, None), False
    return lambda: VideoFileReader(path, w, h), False


def _gst(uri: SourceURI) -> tuple[Callable[[], Reader], bool]:
    if not uri.target:
        raise SourceError(f"could not open {uri.uri}: expected a pipeline such as gst://videotestsrc ! video/x-raw")
    return _gst_reader(uri, uri.target, uri.float_opt("timeout", 10.0) or 10.0, None), False


def _test(uri: SourceURI) -> tuple[Callable[[], Reader], bool]:
    w, h = uri.int_opt("width", 640), uri.int_opt("height", 480)
    pattern = uri.str_opt("pattern", "bars") or "bars"
    if pattern not in ("bars", "noise"):
        raise ConfigError(f"{uri.uri}: option pattern={pattern!r} is not one of bars, noise")
    return lambda: SyntheticReader(w or 0, h or 0, pattern), uri.float_opt("fps") is not None


_FACTORIES: dict[str, Callable[[SourceURI], tuple[Callable[[], Reader], bool]]] = {
    "csi": _csi,
    "v4l2": _v4l2,
    "rtsp": _rtsp,
    "file": _file,
    "gst": _gst,
    "test": _test,
}


def open_source(uri: str) -> Source:
    """A :class:`Source` for ``uri`` (not started). ConfigError for an unsupported scheme or option."""
    parsed = parse_source_uri(uri)
    make_reader, live = _FACTORIES[parsed.scheme](parsed)
    live = parsed.bool_opt("live", live)
    device_paced = parsed.scheme in ("csi", "v4l2", "rtsp", "gst")  # fps goes to the device
    return Source(
        parsed.uri,  # already without a password
        make_reader,
        live=live,
        reconnect=parsed.bool_opt("reconnect", live and parsed.scheme in ("csi", "v4l2", "rtsp", "gst")),
        fps=None if device_paced else parsed.float_opt("fps"),
        max_frames=parsed.int_opt("frames"),
        loop=parsed.bool_opt("loop", False),
        reconnect_min=parsed.float_opt("reconnect_min", 0.5) or 0.5,
        reconnect_max=parsed.float_opt("reconnect_max", 10.0) or 10.0,
    )
