"""Generated units: their directives, and the real systemd-analyze (`verify` says nothing, `security --offline`
scores at most SECURITY_GOAL). Only the tests that run systemd-analyze skip where it is not installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.config import RunConfig
from edge.errors import ConfigError, ServiceError
from edge.service.systemd import device_nodes, plan_unit
from edge.service.unit import quote_arg, render_unit

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")

# The pass mark follows the measured exposure (systemd 252: 1.1 to 1.8 over these units; docs/service.md has
# the table), just above the worst, so a change that loosens the sandbox fails here instead of hiding under 5.0.
SECURITY_GOAL = 2.0
# Directives that loosen the sandbox: each must follow a comment saying why.
LOOSENING = (
    "SupplementaryGroups=",
    "BindPaths=",
    "ProtectHome=tmpfs",
    "PrivateDevices=no",
    "RestrictAddressFamilies=AF_UNIX AF_INET",
)


def run_config(tmp_path: Path, face_bundle: Path, token_file: Path | None, **data: Any) -> RunConfig:
    base: dict[str, Any] = {"model": str(face_bundle), "sources": ["test://"]}
    base.update(data)
    if token_file is not None and "http" in base and "auth" not in base["http"]:
        base["http"] = {**base["http"], "token_file": str(token_file)}
    return RunConfig.from_dict(base, base_dir=tmp_path)


def verify(path: Path) -> str:
    run = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    return (run.stdout + run.stderr).strip() + ("" if run.returncode == 0 else f" (exit {run.returncode})")


def security_score(path: Path) -> float:
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", run.stdout)
    assert m, run.stdout + run.stderr
    return float(m.group(1))


SCENARIOS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "csi-http-public",
        {"sources": ["csi://0"], "http": {"listen": "0.0.0.0:8080"}, "sinks": ["jsonl://out/events.jsonl"]},
        {
            "user": "edge",
            "has": [
                "After=nvargus-daemon.service",
                "Wants=nvargus-daemon.service",
                "BindPaths=-/tmp/argus_socket",
                "LoadCredential=http-token:{token}",
                "ReadWritePaths=-{tmp}/out",
                "User=edge",
                "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                "After=network-online.target",
            ],
            "lacks": ["IPAddressDeny", "PrivateNetwork", "DynamicUser"],
        },
    ),
    (
        "v4l2-offline",
        {"sources": ["v4l2:///dev/video0"], "sinks": ["jsonl:///var/log/edge/events.jsonl"]},
        {
            "has": [
                "DynamicUser=yes",
                "PrivateNetwork=yes",
                "RestrictAddressFamilies=AF_UNIX",
                "ReadWritePaths=-/var/log/edge",
            ],
            "lacks": ["nvargus", "LoadCredential", "network-online", "AF_INET"],
        },
    ),
    (
        "file-http-loopback",
        {"sources": ["test://"], "http": {"listen": "127.0.0.1:8080"}},
        {
            "has": ["IPAddressAllow=localhost", "IPAddressDeny=any", "LoadCredential=http-token:{token}"],
            "lacks": ["PrivateNetwork", "network-online", "nvargus"],
        },
    ),
    (
        "rtsp-mjpeg-auth-none",
        {
            "sources": ["rtsp://cam.local:8554/live"],
            "sinks": ["mjpeg://127.0.0.1:8090"],
            "http": {"listen": "[::1]:8080", "auth": "none"},
        },
        {
            "has": ["After=network-online.target", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"],
            "lacks": ["IPAddressDeny", "LoadCredential"],
        },
    ),
    (
        "service-section",
        {
            "service": {
                "watchdog_sec": "1m",
                "restart_sec": "5s",
                "environment": {"CUDA_MODULE_LOADING": "LAZY", "P": "50%"},
                "supplementary_groups": ["video", "render"],
                "state_dir": "edge-door",
                "description": "Front door 100%",
            }
        },
        {
            "has": [
                "WatchdogSec=60s",
                "RestartSec=5s",
                'Environment="CUDA_MODULE_LOADING=LAZY"',
                'Environment="P=50%%"',
                "SupplementaryGroups=video render",
                "StateDirectory=edge-door",
                "Environment=EDGE_STATE_DIR=%S/edge-door",
                "CacheDirectory=edge-door",
                "Environment=XDG_CACHE_HOME=%C/edge-door",
                "Description=Front door 100%%",
            ],
            "lacks": [],
        },
    ),
    (
        "no-watchdog",
        {"service": {"watchdog_sec": 0}},
        {"has": ["Type=notify"], "lacks": ["WatchdogSec"]},
    ),
]


def scenario_unit(tmp_path: Path, face_bundle: Path, token_file: Path, data: dict[str, Any], user: str | None) -> str:
    cfg = run_config(tmp_path, face_bundle, token_file, **data)
    planned = plan_unit(cfg, tmp_path / "cam.yaml", "cam", user=user, version=252, dev_root=tmp_path / "nodev")
    return render_unit(planned.spec)


@pytest.mark.parametrize(("label", "data", "expect"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_generated_units(
    tmp_path: Path, face_bundle: Path, token_file: Path, label: str, data: dict[str, Any], expect: dict[str, Any]
) -> None:
    text = scenario_unit(tmp_path, face_bundle, token_file, data, expect.get("user"))
    for needle in expect["has"]:
        assert needle.format(token=token_file, tmp=tmp_path) in text, needle
    for needle in expect["lacks"]:
        assert needle not in text, needle
    check_comments(text)
    assert "# RestartSteps=/RestartMaxDelaySec= (backoff) need systemd 254" in text
    assert f"ExecStart={sys.executable} -m edge run {tmp_path}/cam.yaml" in text
    assert f"WorkingDirectory={tmp_path}" in text


@needs_analyze
@pytest.mark.parametrize(("label", "data", "expect"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_generated_units_verify_clean_and_score(
    tmp_path: Path, face_bundle: Path, token_file: Path, label: str, data: dict[str, Any], expect: dict[str, Any]
) -> None:
    unit = tmp_path / "edge-cam.service"
    unit.write_text(scenario_unit(tmp_path, face_bundle, token_file, data, expect.get("user")))
    assert verify(unit) == ""
    score = security_score(unit)
    print(f"{label}: exposure {score}")
    assert score <= SECURITY_GOAL, f"{label}: exposure {score}"


def check_comments(text: str) -> None:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(LOOSENING):
            j = i - 1
            block = []
            while lines[j].startswith("#"):
                block.append(lines[j])
                j -= 1
            assert any(b.startswith("# EXCEPTION: ") for b in block), f"{line} has no comment saying why"
    for left_out in ("MemoryDenyWriteExecute=", "PrivateUsers=", "ProcSubset="):
        assert f"# EXCEPTION: {left_out} is left out: " in text
    for secret in ("TOKEN", "s3cret"):
        assert secret not in text


def test_unit_for_a_home_directory_install(tmp_path: Path, face_bundle: Path) -> None:
    cfg = run_config(tmp_path, face_bundle, None, sources=["file:///home/ana/clips/door.mp4"])
    planned = plan_unit(cfg, Path("/home/ana/edge/cam.yaml"), "cam", version=252, dev_root=tmp_path)
    text = render_unit(planned.spec)
    assert "ProtectHome=tmpfs" in text
    assert "BindReadOnlyPaths=/home/ana/clips/door.mp4 /home/ana/edge" in text
    check_comments(text)
    if shutil.which("systemd-analyze"):  # the directives above are checked everywhere; systemd's verdict where it is
        unit = tmp_path / "edge-cam.service"
        unit.write_text(text)
        assert verify(unit) == ""
        assert security_score(unit) <= SECURITY_GOAL


def test_device_nodes_found_at_install_time(tmp_path: Path, face_bundle: Path) -> None:
    # A stand-in /dev (the hardware boundary): the nodes a Jetson Orin and a desktop GPU expose.
    dev = tmp_path / "dev"
    for node in (
        "nvmap",
        "nvhost-ctrl-gpu",
        "nvhost-vic",
        "nvgpu/igpu0/ctrl",
        "nvidia0",
        "nvidiactl",
        "nvidia-uvm",
        "video0",
        "dri/renderD128",
        "sda",
        "mem",
    ):
        (dev / node).parent.mkdir(parents=True, exist_ok=True)
        (dev / node).touch()
    nodes = device_nodes(dev)
    assert nodes == [
        "/dev/nvidia0",
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvmap",
        "/dev/nvhost-ctrl-gpu",
        "/dev/nvhost-vic",
        "/dev/nvgpu/igpu0/ctrl",
        "/dev/dri/renderD128",
    ]
    cfg = run_config(tmp_path, face_bundle, None, sources=["csi://0"])
    text = render_unit(plan_unit(cfg, tmp_path / "c.yaml", "cam", version=252, dev_root=dev).spec)
    for node in nodes:
        assert f"DeviceAllow={node} rw" in text
    assert "/dev/sda" not in text and "/dev/mem" not in text
    if shutil.which("systemd-analyze"):  # the directives above are checked everywhere; systemd's verdict where it is
        unit = tmp_path / "edge-cam.service"
        unit.write_text(text)
        assert verify(unit) == ""
        assert security_score(unit) <= SECURITY_GOAL


def test_newer_systemd_gets_restart_backoff(tmp_path: Path, face_bundle: Path) -> None:
    cfg = run_config(tmp_path, face_bundle, None, service={"restart_sec": "1s", "restart_max_sec": "2m"})
    text = render_unit(plan_unit(cfg, tmp_path / "c.yaml", "cam", version=256, dev_root=tmp_path).spec)
    assert "RestartSteps=8" in text and "RestartMaxDelaySec=120s" in text


def test_old_systemd_without_credentials(tmp_path: Path, face_bundle: Path, token_file: Path) -> None:
    cfg = run_config(tmp_path, face_bundle, token_file, http={"listen": "0.0.0.0:8080"})
    with pytest.raises(ServiceError, match="systemd 245 cannot hand the token file to a DynamicUser service"):
        plan_unit(cfg, tmp_path / "c.yaml", "cam", version=245, dev_root=tmp_path)
    text = render_unit(plan_unit(cfg, tmp_path / "c.yaml", "cam", user="edge", version=245, dev_root=tmp_path).spec)
    directives = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any(d.startswith(("LoadCredential=", "ProtectProc=")) for d in directives)
    assert f"# the HTTP token is read from {token_file}" in text


def test_missing_output_directories_are_warned(tmp_path: Path, face_bundle: Path) -> None:
    (tmp_path / "out").mkdir()
    cfg = run_config(tmp_path, face_bundle, None, sinks=["jsonl://out/a.jsonl", "file://videos/b.mp4"])
    planned = plan_unit(cfg, tmp_path / "c.yaml", "cam", user="edge", version=252, dev_root=tmp_path)
    assert planned.spec.write_paths == [tmp_path / "out", tmp_path / "videos"]
    # (tmp_path usually lies in /tmp, which adds the PrivateTmp warning: tests/service/test_tmp_paths.py)
    assert [w for w in planned.warnings if "in the host's /tmp" not in w] == [
        f"{tmp_path / 'videos'} does not exist: create it now, the service cannot (its file system is read-only)"
    ]


def test_power_changes_without_jetson_stats_are_warned(tmp_path: Path, face_bundle: Path) -> None:
    cfg = run_config(tmp_path, face_bundle, None, power={"mode": "MAXN", "clocks": "on"})
    planned = plan_unit(cfg, tmp_path / "c.yaml", "cam", version=252, dev_root=tmp_path)
    assert any("jetson-stats (jtop) is not installed" in w for w in planned.warnings)
    assert "no root and no capabilities, so nvpmodel/jetson_clocks will be refused" in render_unit(planned.spec)


@pytest.mark.parametrize("name", ["", "Cam", "a b", "-x", "x" * 64, "../etc"])
def test_bad_names(tmp_path: Path, face_bundle: Path, name: str) -> None:
    cfg = run_config(tmp_path, face_bundle, None)
    with pytest.raises(ConfigError, match="--name"):
        plan_unit(cfg, tmp_path / "c.yaml", name, version=252)


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("/usr/bin/python3", "/usr/bin/python3"),
        ("/opt/my env/py", '"/opt/my env/py"'),
        ("50%", "50%%"),
        ("$HOME", "$$HOME"),
    ],
)
def test_exec_arguments_are_escaped(arg: str, quoted: str) -> None:
    assert quote_arg(arg) == quoted
