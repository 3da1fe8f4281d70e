"""``edge power`` end to end on sysroots with the nvpmodel/jetson_clocks stand-ins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli import main


def edge(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["power", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_json(make_jetson, capsys) -> None:
    jetson = make_jetson("orin-nano-8gb", super_flash=True)
    code, out, _ = edge(capsys, "status", "--json", "--sysroot", str(jetson.root))
    assert code == 0
    report = json.loads(out)
    assert report["jetson"] is True and report["backend"] == "cli"
    assert report["current"] == {"id": 1, "name": "25W"}
    assert report["default"] == {"id": 1, "name": "25W"}
    assert [m["name"] for m in report["modes"]] == ["15W", "25W", "MAXN_SUPER", "7W"]
    assert report["model"] == "NVIDIA Jetson Orin Nano Developer Kit"
    # The fixture's modes are the Super devkit's real conf (7W is id 3); the profile must name the same.
    check = report["profile_check"]
    assert (check["profile"], check["super_flash"], check["match"], check["differences"]) == (
        "jetson-orin-nano-8gb",
        True,
        True,
        [],
    )
    tel = report["telemetry"]
    assert tel["temperatures_c"]["tj-thermal"] == 49.125
    assert tel["gpu_load_pct"] == pytest.approx(37.2)
    assert [r["name"] for r in tel["rails"]] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    assert tel["mode"] == "25W"


def test_status_text(make_jetson, capsys) -> None:
    jetson = make_jetson("agx-orin-64gb")
    code, out, _ = edge(capsys, "status", "--sysroot", str(jetson.root))
    assert code == 0
    assert out.splitlines() == [
        "device: NVIDIA Jetson AGX Orin Developer Kit (# R36 (release), REVISION: 4.3, GCID: 38968081, "
        "BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025)",
        "mode: MODE_30W (id 2), backend cli",
        "modes: MAXN (0), MODE_15W (1), MODE_30W (2), MODE_50W (3)",
        "clocks: not pinned",
        "temperatures: cpu-thermal 48.5C, gpu-thermal 47.2C, soc0-thermal 46.0C, tj-thermal 49.1C",
        "GPU load: 37.2%",
        "power: VDD_IN 7.56W, VDD_CPU_GPU_CV 1.94W, VDD_SOC 3.03W; total 7.56W",
    ]


def test_modes_with_profile_cross_check(make_jetson, capsys) -> None:
    jetson = make_jetson("orin-nano-4gb")
    code, out, _ = edge(capsys, "modes", "--sysroot", str(jetson.root))
    assert code == 0
    assert out.splitlines() == [
        " ID  NAME",
        "  0  10W  (current, default)",
        "  1  7W_AI",
        "  2  7W_CPU",
        "source: nvpmodel -p --verbose",
        "profile jetson-orin-nano-4gb: modes match",
    ]
    # A custom mode added to the device's conf: the device's list is used, the difference flagged.
    conf = jetson.root / "etc/nvpmodel.conf"
    conf.write_text(conf.read_text().replace("< PM_CONFIG", "< POWER_MODEL ID=3 NAME=5W_CUSTOM >\n\n< PM_CONFIG"))
    code, out, _ = edge(capsys, "modes", "--sysroot", str(jetson.root))
    assert "  3  5W_CUSTOM" in out.splitlines()
    assert out.splitlines()[-1].startswith("warning: modes differ from profile jetson-orin-nano-4gb: ")
    assert "device has 5W_CUSTOM (id 3), profile does not" in out.splitlines()[-1]


def test_set_and_clocks(make_jetson, capsys) -> None:
    jetson = make_jetson("orin-nx-16gb")
    root = str(jetson.root)
    assert edge(capsys, "set", "MAXN", "--sysroot", root) == (0, "power mode: 15W -> MAXN (id 0), verified\n", "")
    assert jetson.mode_id() == 0
    assert edge(capsys, "set", "maxn", "--sysroot", root) == (0, "power mode: already MAXN (id 0)\n", "")
    assert edge(capsys, "clocks", "on", "--sysroot", root) == (0, "clocks: pinned\n", "")
    assert edge(capsys, "clocks", "restore", "--sysroot", root) == (0, "clocks: not pinned\n", "")
    assert edge(capsys, "clocks", "on", "--sysroot", root)[1] == "clocks: pinned\n"
    assert edge(capsys, "clocks", "off", "--sysroot", root)[1] == "clocks: not pinned\n"


@pytest.mark.parametrize(
    ("args", "behaviour", "code", "error"),
    [
        (
            ["set", "MAXN_SUPER"],
            "ok",
            7,
            "error: unknown power mode 'MAXN_SUPER': this device's modes are MAXN, 10W, 15W, 20W "
            "(nvpmodel -p --verbose)",
        ),
        (
            ["set", "MAXN"],
            "reboot",
            7,
            "error: switching the power mode to MAXN: reboot required; nothing was changed. "
            "Run `sudo nvpmodel -m 0` by hand, answer YES and let the device reboot",
        ),
        (
            ["set", "10W"],
            "noroot",
            7,
            "error: switching the power mode to 10W: permission denied (NVPM ERROR: Error opening "
            "/sys/kernel/nvpmodel_emc_cap/emc_iso_cap: 13); run it with sudo, or install jetson-stats so that "
            "its jtop service (which runs as root) makes the change",
        ),
        (
            ["clocks", "restore"],
            "ok",
            7,
            "error: restoring the clocks: nothing stored at {state} (`edge power clocks on` stores it)",
        ),
    ],
)
def test_errors(args, behaviour, code, error, make_jetson, capsys, monkeypatch) -> None:
    jetson = make_jetson("orin-nx-8gb")
    monkeypatch.setenv("STANDIN_NVPMODEL", behaviour)
    result = edge(capsys, *args, "--sysroot", str(jetson.root))
    state = jetson.root / "var/lib/edge/jetson_clocks.conf"
    assert result == (code, "", error.format(state=state) + "\n")
    assert jetson.mode_id() == 2


@pytest.mark.parametrize("args", [["status"], ["modes"], ["set", "MAXN"], ["clocks", "on"]])
def test_not_a_jetson_and_no_nvml_here(args, desktop: Path, capsys) -> None:
    """This machine's own NVML (pynvml without a driver, or a GPU): a Jetson-style command never half-works."""
    code, out, err = edge(capsys, *args, "--sysroot", str(desktop))
    if code == 8:  # no NVIDIA driver here: one line (tests/power/test_nvml.py pins its exact text)
        assert out == "" and err.startswith("error: no power control on this machine: not a Jetson (no /etc/")
        assert len(err.splitlines()) == 1
    else:  # a machine with an NVIDIA driver: desktop names, never nvpmodel's
        assert code in (0, 7) and "nvpmodel" not in out + err


def test_python_m_edge_power(make_jetson) -> None:
    jetson = make_jetson("orin-nano-8gb")
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "power", "set", "7W", "--sysroot", str(jetson.root)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (0, "power mode: 15W -> 7W (id 1), verified\n")
    assert jetson.mode_id() == 1


def test_restore_on_a_jetson_puts_the_stored_clocks_back(make_jetson, capsys) -> None:
    jetson = make_jetson("orin-nx-16gb")
    root = str(jetson.root)
    state = jetson.root / "var/lib/edge/jetson_clocks.conf"
    record = jetson.root / "var/lib/edge/nvpmodel-mode.json"
    assert edge(capsys, "restore", "--sysroot", root) == (
        0,
        f"nothing to restore: no clocks stored at {state} and no mode recorded at {record}\n",
        "",
    )
    assert edge(capsys, "clocks", "on", "--sysroot", root)[1] == "clocks: pinned\n"
    assert edge(capsys, "set", "MAXN", "--sysroot", root)[0] == 0
    assert edge(capsys, "set", "25W", "--sysroot", root)[0] == 0  # the record keeps the mode before the first set
    assert edge(capsys, "restore", "--sysroot", root) == (
        0,
        "clocks: restored (not pinned)\npower mode: 25W -> 15W (id 2), as before edge's first change\n",
        "",
    )
    assert not state.exists() and not record.exists() and jetson.mode_id() == 2
    code, _, err = edge(capsys, "clocks", "lock", "1000,1200", "--sysroot", root)
    assert (code, err) == (
        7,
        "error: clocks lock is for desktop GPUs (NVML); on a Jetson use clocks on|off|restore\n",
    )
