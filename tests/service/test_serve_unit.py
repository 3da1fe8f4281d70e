"""`edge service install` with a serve config: the unit runs `edge serve CONFIG` with the pipeline unit's
hardening; checked by the real CLI, and by the real systemd-analyze where it is installed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from edge.cli import main
from edge.service.systemd import plan_serve_unit, validate_serve
from edge.service.unit import render_unit
from tests.service.test_unit import SECURITY_GOAL, check_comments, security_score, verify


def serve_config(tmp_path: Path, repository: Path, serve: str, extra: str = "") -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(f"serve:\n  repository: {repository}\n{serve}{extra}")
    return path


PUBLIC = "  http: 0.0.0.0:8000\n  grpc: 0.0.0.0:8001\n  token_file: {token}\n"
LOOPBACK = "  http: 127.0.0.1:8000\n  grpc: '[::1]:8001'\n  auth: none\n"


def planned_text(tmp_path: Path, face_bundle: Path, token_file: Path, serve: str, extra: str = "") -> str:
    config = serve_config(tmp_path, face_bundle, serve.format(token=token_file), extra)
    planned = plan_serve_unit(validate_serve(config), config, "models", version=252, dev_root=tmp_path / "nodev")
    return render_unit(planned.spec)


def test_public_listeners_with_a_token(tmp_path: Path, face_bundle: Path, token_file: Path) -> None:
    text = planned_text(tmp_path, face_bundle, token_file, PUBLIC)
    assert f"ExecStart={sys.executable} -m edge serve {tmp_path}/models.yaml" in text
    assert "Description=edge serve models" in text
    assert "# READY=1 once every model is loaded and warmed up and the listeners are bound" in text
    assert "# WATCHDOG=1 is sent while the server's event loop turns: a hung server is restarted" in text
    assert f"LoadCredential=http-token:{token_file}" in text
    assert "After=network-online.target" in text and "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in text
    for same in ("NoNewPrivileges=yes", "ProtectSystem=strict", "DevicePolicy=closed", "SystemCallFilter=~@privileged"):
        assert same in text  # the same hardening as a pipeline unit
    assert "IPAddressDeny" not in text and "nvargus" not in text and "PrivateNetwork" not in text
    assert "TimeoutStopSec=35s" in text  # serve.drain_timeout (30 s) + 5 s, over service.stop_timeout_sec's 30 s
    check_comments(text)


def test_loopback_listeners_without_auth(tmp_path: Path, face_bundle: Path, token_file: Path) -> None:
    extra = "service:\n  watchdog_sec: 10\n  stop_timeout_sec: 90\n  description: Models on loopback\n"
    text = planned_text(tmp_path, face_bundle, token_file, LOOPBACK, extra)
    assert "IPAddressAllow=localhost" in text and "IPAddressDeny=any" in text
    assert "# EXCEPTION: the HTTP/gRPC listeners are on loopback; every other address is refused" in text
    assert "LoadCredential" not in text and "network-online" not in text
    assert "WatchdogSec=10s" in text and "TimeoutStopSec=90s" in text and "Description=Models on loopback" in text
    check_comments(text)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("serve", [PUBLIC, LOOPBACK], ids=["public", "loopback"])
def test_serve_units_verify_clean_and_score(tmp_path: Path, face_bundle: Path, token_file: Path, serve: str) -> None:
    unit = tmp_path / "edge-models.service"
    unit.write_text(planned_text(tmp_path, face_bundle, token_file, serve))
    assert verify(unit) == ""
    assert security_score(unit) <= SECURITY_GOAL


def test_install_a_serve_config_through_the_cli(
    tmp_path: Path, face_bundle: Path, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = serve_config(tmp_path, face_bundle, PUBLIC.format(token=token_file))
    out_dir = tmp_path / "units"
    assert main(["service", "install", str(config), "--name", "models", "--unit-dir", str(out_dir)]) == 0
    unit = out_dir / "edge-models.service"
    assert capsys.readouterr().out.strip() == str(unit)
    assert f"ExecStart={sys.executable} -m edge serve {config}" in unit.read_text()
    assert main(["service", "install", str(config), "--name", "models", "--dry-run"]) == 0
    assert "-m edge serve" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("serve", "extra", "code", "message"),
    [
        (PUBLIC, "model: x.bundle\n", 2, "model: unknown top-level key in a serve config (allowed: serve, service)"),
        (PUBLIC + "  batching: true\n", "", 2, "batching"),
        (PUBLIC, "service:\n  watchdog_sec: 1\n", 2, "service.watchdog_sec: must be 0 (off) or at least 2s"),
        ("  http: 0.0.0.0:8000\n  auth: none\n", "", 2, "only allowed on loopback"),
        ("  token_file: {missing}\n", "", 9, "cannot read the token (No such file or directory)"),
    ],
    ids=["run-config-key", "unknown-serve-key", "bad-watchdog", "no-auth-public", "missing-token"],
)
def test_install_refuses_bad_serve_configs(
    tmp_path: Path,
    face_bundle: Path,
    token_file: Path,
    capsys: pytest.CaptureFixture[str],
    serve: str,
    extra: str,
    code: int,
    message: str,
) -> None:
    text = serve.format(token=token_file, missing=tmp_path / "nope")
    config = serve_config(tmp_path, face_bundle, text, extra)
    out_dir = tmp_path / "units"
    assert main(["service", "install", str(config), "--name", "models", "--unit-dir", str(out_dir)]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out_dir.exists()


def test_an_empty_repository_is_refused(tmp_path: Path, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "repo").mkdir()
    config = serve_config(tmp_path, tmp_path / "repo", PUBLIC.format(token=token_file))
    assert main(["service", "install", str(config), "--name", "models", "--unit-dir", str(tmp_path / "u")]) == 2
    assert "no models in it" in capsys.readouterr().err
