"""Source URIs as Jetson users know them, parsed into a scheme, a target and typed options.

    csi://0?width=1280&height=720&fps=30        v4l2:///dev/video0?format=MJPG
    rtsp://host:8554/cam?latency=100            file://clip.mp4, clip.mp4, ./photos/
    gst://videotestsrc ! video/x-raw,width=640  test://?width=1920&height=1080&fps=30

Options are query parameters. A key this kit does not know is an error for every scheme but
``rtsp``, whose unknown query parameters stay in the camera's URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from edge.errors import ConfigError

SCHEMES = ("csi", "v4l2", "rtsp", "rtsps", "file", "gst", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

# key -> (type, schemes that accept it); "*" is every scheme
_OPTIONS: dict[str, tuple[type, tuple[str, ...]]] = {
    "width": (int, ("*",)),
    "height": (int, ("*",)),
    "fps": (float, ("*",)),
    "live": (bool, ("*",)),
    "reconnect": (bool, ("*",)),
    "reconnect_min": (float, ("*",)),
    "reconnect_max": (float, ("*",)),
    "timeout": (float, ("*",)),
    "frames": (int, ("*",)),
    "loop": (bool, ("file", "test")),
    "api": (str, ("*",)),
    "format": (str, ("v4l2",)),
    "flip": (int, ("csi",)),
    "latency": (int, ("rtsp", "rtsps")),
    "codec": (str, ("rtsp", "rtsps")),
    "protocols": (str, ("rtsp", "rtsps")),
    "pattern": (str, ("test",)),
}
APIS = ("auto", "gst-launch", "opencv")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_GST_QUERY = re.compile(r"^\w+=[^&\s!]*(&\w+=[^&\s!]*)*$")


@dataclass(frozen=True)
class SourceURI:
    """A parsed source URI: ``scheme``, ``target`` (device, path, URL or pipeline) and typed ``options``."""

    uri: str
    scheme: str
    target: str
    options: Mapping[str, object] = field(default_factory=dict)

    def opt(self, key: str, default: object = None) -> object:
        return self.options.get(key, default)

    def int_opt(self, key: str, default: int | None = None) -> int | None:
        value = self.options.get(key, default)
        return None if value is None else int(value)  # type: ignore[call-overload]

    def float_opt(self, key: str, default: float | None = None) -> float | None:
        value = self.options.get(key, default)
        return None if value is None else float(value)  # type: ignore[arg-type]

    def bool_opt(self, key: str, default: bool) -> bool:
        return bool(self.options.get(key, default))

    def str_opt(self, key: str, default: str | None = None) -> str | None:
        value = self.options.get(key, default)
        return None if value is None else str(value)


def _convert(uri: str, key: str, value: str, kind: type) -> object:
    try:
        if kind is bool:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError(value)
        converted = kind(value)
    except ValueError:
        raise ConfigError(f"{uri}: option {key}={value!r} is not a valid {kind.__name__}") from None
    if isinstance(converted, (int, float)) and converted < 0:
        raise ConfigError(f"{uri}: option {key} cannot be negative, got {value}")
    return converted


def _options(uri: str, scheme: str, pairs: list[tuple[str, str]], keep_unknown: bool) -> tuple[dict[str, object], list]:
    options: dict[str, object] = {}
    rest: list[tuple[str, str]] = []
    for key, value in pairs:
        spec = _OPTIONS.get(key)
        if spec is None or ("*" not in spec[1] and scheme not in spec[1]):
            if keep_unknown:
                rest.append((key, value))
                continue
            valid = sorted(k for k, (_, s) in _OPTIONS.items() if "*" in s or scheme in s)
            raise ConfigError(f"{uri}: unknown option {key!r} for {scheme}:// sources; valid: {', '.join(valid)}")
        options[key] = _convert(uri, key, value, spec[0])
    if "api" in options and options["api"] not in APIS:
        raise ConfigError(f"{uri}: option api={options['api']!r} is not one of {', '.join(APIS)}")
    return options, rest


def parse_source_uri(uri: str) -> SourceURI:
    """Split a source URI; ConfigError for an unsupported scheme or a bad option, naming the URI."""
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError(f"source: expected a URI such as csi://0, rtsp://host/path or file://clip.mp4, got {uri!r}")
    uri = uri.strip()
    shown = redact(uri)  # errors and names never carry a password
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", uri)
    if m is None:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\\/]", uri) and not Path(uri).exists():
            raise ConfigError(f"unsupported source {shown!r}: write it as a URI such as file://{shown} or rtsp://...")
        path, sep, query = uri.partition("?")
        if sep and not Path(uri).exists():  # clip.mp4?loop=1: options as on file://clip.mp4?loop=1
            options, _ = _options(shown, "file", parse_qsl(query, keep_blank_values=True), False)
            return SourceURI(shown, "file", path, options)
        return SourceURI(shown, "file", uri, {})  # a bare path
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported source scheme {scheme}:// in {shown!r}; use one of "
            + ", ".join(f"{s}://" for s in SCHEMES if s != "rtsps")
        )
    body = uri[m.end() :]
    if scheme == "gst":
        head, sep, query = body.rpartition("?")
        if sep and _GST_QUERY.match(query):
            options, _ = _options(shown, scheme, parse_qsl(query, keep_blank_values=True), False)
            return SourceURI(shown, scheme, head.strip(), options)
        return SourceURI(shown, scheme, body.strip(), {})
    if scheme in ("rtsp", "rtsps"):
        parts = urlsplit(uri)
        options, rest = _options(shown, scheme, parse_qsl(parts.query, keep_blank_values=True), True)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
        return SourceURI(shown, "rtsp", url, options)
    target, _, query = body.partition("?")
    options, _ = _options(shown, scheme, parse_qsl(query, keep_blank_values=True), False)
    if scheme == "v4l2" and not target:
        raise ConfigError(f"{shown}: expected a device such as v4l2:///dev/video0")
    if scheme == "csi":
        target = target or "0"
        if not target.isdigit():
            raise ConfigError(f"{shown}: expected a sensor number such as csi://0")
    if scheme == "file" and not target:
        raise ConfigError(f"{shown}: expected a path such as file://clip.mp4")
    return SourceURI(shown, scheme, target, options)


def is_image_path(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/@?#:\s\"']*):[^/?#\s\"']*@")
_PW_PROPERTY = re.compile(r"\b(user-pw|password|passwd)=(\"(?:[^\"\\]|\\.)*\"|'[^']*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every credential in it replaced by ``***`` (for logs, events, errors and metrics).

    The password of a URL (``rtsp://user:pw@host``, also inside a quoted pipeline property) and
    password properties of a pipeline description (``user-pw=...``).
    """
    return _PW_PROPERTY.sub(r"\1=***", _PASSWORD.sub(r"\1:***@", text))
