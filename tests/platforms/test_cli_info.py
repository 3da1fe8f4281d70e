"""``edge info`` and ``edge info --targets``, in process through edge.cli.main and as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import platforms
from edge.cli import main
from platforms.versions import package_version

from .conftest import R36_4_3

REPO = Path(__file__).resolve().parents[2]
NX_SUPER = ["nvidia,p3768-0000+p3767-0000-super", "nvidia,p3767-0000", "nvidia,tegra234"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["info", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(out: str) -> dict[str, str]:
    """``edge info`` text: one ``key  value`` row per line, columns two or more spaces apart."""
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines())


def _backends(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["name"]: b for b in data["backends"]}


def test_info_json_on_a_jetson_sysroot(make_sysroot: Any, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_sysroot(release=R36_4_3, compatible=NX_SUPER, model="NVIDIA Orin NX Developer Kit", cuda="12.6.68")
    code, out, _ = _run(capsys, "--json", "--sysroot", str(root), "--nvidia-smi", "")
    assert code == 0
    data = json.loads(out)
    assert data["platform"] == "jetson-orin-nx-16gb"
    assert (data["l4t_version"], data["jetpack_version"], data["cuda_version"]) == ("36.4.3", "6.2", "12.6.68")
    assert data["super_flash"] is True and data["compute_capability"] == "8.7"
    assert data["unverified"] == ["default_power_mode_super"]
    assert data["power_modes"][0] == {"id": 0, "name": "MAXN_SUPER"} and len(data["power_modes"]) == 5
    assert data["default_power_mode"] == "15W"
    backends = _backends(data)
    assert backends["onnxruntime"]["available"] is True
    assert "CPUExecutionProvider" in backends["onnxruntime"]["providers"]
    # TensorRT for RTX never runs on Jetson (sm_87), whether or not the wheel is installed here.
    assert backends["tensorrt-rtx"]["available"] is False
    assert backends["tensorrt"]["available"] is (package_version("tensorrt") is not None)


def test_info_text_on_a_cpu_sysroot(make_sysroot: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--sysroot", str(make_sysroot()), "--nvidia-smi", "")
    assert code == 0
    rows = _rows(out)
    assert rows["platform"] == "cpu (CPU (ONNX Runtime))"
    assert rows["reason"].startswith("not a Jetson and no NVIDIA GPU found")
    assert rows["GPU"] == "none"
    assert rows["backend onnxruntime"].startswith("yes: ") and "CPUExecutionProvider" in rows["backend onnxruntime"]
    assert "Super" not in out and "power modes" not in out  # only shown on a Jetson
    rtx = package_version("tensorrt_rtx")
    expected = "no: tensorrt_rtx not installed" if rtx is None else f"tensorrt_rtx {rtx} installed, but no NVIDIA GPU"
    assert expected in out


def test_info_text_on_a_jetson_sysroot(make_sysroot: Any, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_sysroot(release=R36_4_3, compatible=["nvidia,p3768-0000+p3767-0004", "nvidia,p3767-0004"])
    code, out, _ = _run(capsys, "--sysroot", str(root), "--nvidia-smi", "")
    assert code == 0
    rows = _rows(out)
    assert rows["platform"] == "jetson-orin-nano-4gb (NVIDIA Jetson Orin Nano 4GB)"
    assert (rows["L4T"], rows["JetPack"], rows["Super flash"], rows["CUDA"]) == ("36.4.3", "6.2", "no", "12.6")
    assert rows["power modes"].startswith("0=10W 1=7W_AI 2=7W_CPU, default 10W")
    assert rows["GPU"] == "NVIDIA Jetson Orin Nano 4GB integrated GPU (compute capability 8.7)"
    assert rows["backend tensorrt-rtx"].startswith("no: ")


@pytest.mark.parametrize(
    ("argv", "code", "error"),
    [
        (["--sysroot", "/nonexistent/sysroot"], 2, "error: sysroot '/nonexistent/sysroot' is not a directory"),
        (["--bogus"], 2, "--bogus"),
    ],
)
def test_info_errors(capsys: pytest.CaptureFixture[str], argv: list[str], code: int, error: str) -> None:
    try:
        got = main(["info", *argv])
    except SystemExit as exc:  # argparse rejects unknown flags by exiting
        got = int(exc.code or 0)
    assert got == code
    err = capsys.readouterr().err
    assert error in err and "Traceback" not in err


def test_targets_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--targets")
    assert code == 0
    rows = out.splitlines()
    assert rows[0].split()[:4] == ["target", "CC", "flavour", "precisions"]
    table = {r.split()[0]: r.split() for r in rows[1:]}
    assert list(table) == list(platforms.target_ids())
    assert table["rtx-ada"][1:4] == ["8.9", "tensorrt-rtx", "fp32,fp16,bf16,int8,fp8"]
    assert table["jetson-orin-nano-4gb"][1:5] == ["8.7", "tensorrt", "fp32,fp16,int8", "0"]
    assert table["cpu"][1:3] == ["-", "onnxruntime"]

    code, out, _ = _run(capsys, "--targets", "--json")
    targets = json.loads(out)["targets"]
    assert [t["id"] for t in targets] == list(platforms.target_ids())
    hopper = next(t for t in targets if t["id"] == "hopper")
    assert (hopper["compute_capability"], hopper["trt_flavour"]) == ("9.0", "tensorrt")
    assert "fp8" in hopper["precisions"] and hopper["sources"]["trt_flavour"]


def test_info_subprocess_with_nvidia_smi_stand_in(make_sysroot: Any, fake_nvidia_smi: Any) -> None:
    fake_nvidia_smi(["NVIDIA GeForce RTX 4090, 8.9, 550.54.14"])  # on PATH, inherited by the subprocess
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "info", "--json", "--sysroot", str(make_sysroot())],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["platform"], data["gpu_name"], data["driver_version"]) == (
        "rtx-ada",
        "NVIDIA GeForce RTX 4090",
        "550.54.14",
    )
    rtx = _backends(data)["tensorrt-rtx"]
    assert rtx["available"] is (package_version("tensorrt_rtx") is not None)
    assert rtx["version"] == package_version("tensorrt_rtx")


def test_targets_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "info", "--targets"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()[1:]] == list(platforms.target_ids())


def test_platforms_imports_only_stdlib_yaml_and_edge_errors() -> None:
    code = (
        "import sys, platforms; platforms.all_targets(); platforms.detect(nvidia_smi=None); "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('edge', 'numpy', 'cv2', 'onnx', 'onnxruntime', 'builders', 'tensorrt', 'torch'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["edge", "edge.errors"]
