"""The http and service sections: good values and mistakes in one table each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.errors import ConfigError
from edge.service.config import HttpConfig, ServiceConfig, parse_listen

HTTP_CASES: list[tuple[dict[str, Any], dict[str, Any] | str]] = [
    ({"listen": "0.0.0.0:8080", "token_file": "/etc/edge/token"}, {"host": "0.0.0.0", "port": 8080, "auth": "token"}),
    ({"listen": "127.0.0.1:0", "auth": "none"}, {"port": 0, "auth": "none", "token_file": None}),
    ({"listen": "[::1]:9000", "auth": "none"}, {"host": "::1", "port": 9000}),
    ({"listen": "localhost:80", "auth": "none"}, {"host": "localhost"}),
    ({"listen": "cam.local:8080", "token_file": "/t", "max_upload_mb": 2.5}, {"max_upload_bytes": 2621440}),
    ({"listen": "0.0.0.0:8080", "token_file": "/t", "stream_fps": 5, "jpeg_quality": 60}, {"stream_fps": 5.0}),
    ({"listen": "0.0.0.0:8080"}, "http.token_file: required key is missing"),
    ({"listen": "0.0.0.0:8080", "auth": "none"}, "http.auth: 'none' is only allowed on a loopback listen"),
    ({"listen": "127.0.0.1:80", "auth": "none", "token_file": "/t"}, "http.token_file: given with auth: none"),
    ({"listen": "127.0.0.1:80", "auth": "basic"}, "http.auth: 'basic' is not one of token, none"),
    ({"token_file": "/t"}, "http.listen: required key is missing"),
    ({"listen": "8080", "token_file": "/t"}, "http.listen: expected HOST:PORT"),
    ({"listen": ":8080", "token_file": "/t"}, "http.listen: expected HOST:PORT"),
    ({"listen": "0.0.0.0:99999", "token_file": "/t"}, "port must be a number from 0 to 65535"),
    ({"listen": "0.0.0.0:http", "token_file": "/t"}, "port must be a number from 0 to 65535"),
    ({"listen": "::1:8080", "auth": "none"}, "write an IPv6 address in brackets"),
    ({"listen": "bad_host!:80", "token_file": "/t"}, "neither an IP address nor a host name"),
    ({"listen": "0.0.0.0:80", "token_file": "/t", "max_upload_mb": 0}, "http.max_upload_mb: must be >= 0.001"),
    ({"listen": "0.0.0.0:80", "token_file": "/t", "jpeg_quality": 5}, "http.jpeg_quality: must be >= 10"),
    ({"listen": "0.0.0.0:80", "token_file": "/t", "tokn": "x"}, "http.tokn: unknown key"),
    ({"listen": 8080, "token_file": "/t"}, "http.listen: expected a string"),
]


@pytest.mark.parametrize(("data", "expected"), HTTP_CASES)
def test_http_config(data: dict[str, Any], expected: dict[str, Any] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            HttpConfig.from_dict(data)
        return
    cfg = HttpConfig.from_dict(data)
    for key, value in expected.items():
        assert getattr(cfg, key) == value, key


def test_http_token_file_relative_to_config_dir(tmp_path: Path) -> None:
    cfg = HttpConfig.from_dict({"listen": "0.0.0.0:1", "token_file": "secrets/token"}, base_dir=tmp_path)
    assert cfg.token_file == tmp_path / "secrets" / "token"
    assert HttpConfig.from_dict({"listen": "0.0.0.0:1", "token_file": "/abs"}, base_dir=tmp_path).token_file == Path(
        "/abs"
    )


def test_listen_round_trip() -> None:
    for text in ("127.0.0.1:8080", "[::1]:8080", "0.0.0.0:0"):
        host, port = parse_listen(text, "x")
        assert HttpConfig(host=host, port=port).listen == text


SERVICE_CASES: list[tuple[Any, dict[str, Any] | str]] = [
    (None, {"watchdog_sec": 30.0, "restart_sec": 2.0, "user": None, "supplementary_groups": ("video",)}),
    (
        {"watchdog_sec": "10s", "restart_sec": "500ms", "restart_max_sec": "2m"},
        {"watchdog_sec": 10.0, "restart_max_sec": 120.0},
    ),
    ({"watchdog_sec": 0}, {"watchdog_sec": 0.0}),
    (
        {"user": "edge", "supplementary_groups": ["video", "render"]},
        {"user": "edge", "supplementary_groups": ("video", "render")},
    ),
    (
        {"state_dir": "edge-cam", "read_write_paths": ["/data/out"]},
        {"state_dir": "edge-cam", "read_write_paths": (Path("/data/out"),)},
    ),
    (
        {"environment": {"CUDA_MODULE_LOADING": "LAZY", "N": 2}},
        {"environment": {"CUDA_MODULE_LOADING": "LAZY", "N": "2"}},
    ),
    ({"start_timeout_sec": "10m", "stop_timeout_sec": 5}, {"start_timeout_sec": 600.0, "stop_timeout_sec": 5.0}),
    ({"watchdog_sec": 1}, r"service.watchdog_sec: must be 0 \(off\) or at least 2s, got 1s"),
    ({"watchdog_sec": "soon"}, "service.watchdog_sec: expected a duration"),
    ({"restart_sec": "10ms"}, "service.restart_sec: must be at least 100ms"),
    ({"restart_sec": 30, "restart_max_sec": 10}, "service.restart_max_sec: must be >= restart_sec"),
    ({"user": "Robert'); DROP"}, "service.user: .* is not a valid user name"),
    ({"supplementary_groups": ["video", 7]}, r"service.supplementary_groups\[1\]"),
    ({"state_dir": "../etc"}, "service.state_dir: expected a plain directory name"),
    ({"state_dir": "/var/lib/x"}, "service.state_dir: expected a plain directory name"),
    ({"read_write_paths": ["relative/out"]}, r"service.read_write_paths\[0\]: expected an absolute path"),
    ({"environment": {"BAD-NAME": "x"}}, "service.environment.BAD-NAME: not a valid environment variable name"),
    ({"environment": {"A": "line1\nline2"}}, "service.environment.A: newlines, backslashes and double quotes"),
    ({"environment": {"A": 'say "hi"'}}, "service.environment.A: newlines, backslashes and double quotes"),
    ({"environment": ["A=1"]}, "service.environment: expected a mapping"),
    ({"description": "two\nlines"}, "service.description: must be one line"),
    ({"start_timeout_sec": 0}, "service.start_timeout_sec: must be at least 1s"),
    ({"watchdog": 10}, "service.watchdog: unknown key"),
    ("30s", "service: expected a mapping"),
]


@pytest.mark.parametrize(("data", "expected"), SERVICE_CASES)
def test_service_config(data: Any, expected: dict[str, Any] | str) -> None:
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            ServiceConfig.from_dict(data)
        return
    cfg = ServiceConfig.from_dict(data)
    for key, value in expected.items():
        assert getattr(cfg, key) == value, key
