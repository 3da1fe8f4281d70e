"""Desktop power saving through NVML: ``edge power`` modes, limits, clocks, restore, and the run policy.

The GPUs are the NVML stand-in of ``nvml_standin.py`` (pynvml's real names, milliwatts and exception
classes; see there what it models). Expected watts are worked by hand from the boards' NVML facts:
RTX 4090 default 450 W (150-600 W accepted), RTX 3090 default 350 W (100-400 W), RTX A2000 70 W fixed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.cli import main
from edge.errors import PowerError
from edge.observer import PipelineStats
from edge.power.config import PowerConfig
from edge.power.nvml import DesktopController, NvmlPower
from edge.power.policy import PowerPolicy

from .nvml_standin import FakeNvml, Gpu, rtx_box

SUDO = "run it with sudo (NVML changes power limits and clocks only as root)"


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNvml:
    fake = FakeNvml(rtx_box())
    monkeypatch.setattr("edge.power.nvml.load_nvml", lambda: fake)
    monkeypatch.setenv("EDGE_STATE_DIR", str(tmp_path / "state"))
    return fake


def edge(capsys: pytest.CaptureFixture[str], desktop: Path, *args: str) -> tuple[int, str, str]:
    code = main(["power", *args, "--sysroot", str(desktop)])
    out, err = capsys.readouterr()
    return code, out, err


def limits(fake: FakeNvml) -> list[int]:
    return [g.limit_mw for g in fake.gpus]


def state_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nvml-power.json"


def test_modes_are_shares_of_the_default_limit(nvml: FakeNvml, desktop: Path, capsys) -> None:
    code, out, err = edge(capsys, desktop, "modes")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "GPU 0 NVIDIA GeForce RTX 4090: max 450W (current), balanced 337.5W, eco 225W; accepts 150-600W",
        "GPU 1 NVIDIA GeForce RTX 3090: max 350W (current), balanced 262.5W, eco 175W; accepts 100-400W",
        "modes: max = 100 %, balanced = 75 %, eco = 50 % of the default power limit; or a wattage (180W)",
    ]
    code, out, _ = edge(capsys, desktop, "modes", "--json")
    data = json.loads(out)
    assert data["shares"] == {"max": 1.0, "balanced": 0.75, "eco": 0.5}
    assert data["gpus"][1]["modes"] == {"max": 350.0, "balanced": 262.5, "eco": 175.0}


def test_eco_then_restore_from_a_new_process_state(nvml: FakeNvml, desktop: Path, tmp_path: Path, capsys) -> None:
    code, out, err = edge(capsys, desktop, "set", "eco")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "GPU 0 NVIDIA GeForce RTX 4090: power limit 450W -> 225W (eco), verified; `edge power restore` puts 450W back",
        "GPU 1 NVIDIA GeForce RTX 3090: power limit 350W -> 175W (eco), verified; `edge power restore` puts 350W back",
    ]
    assert limits(nvml) == [225000, 175000]
    # A second change keeps the first record: restore goes back to what was there before edge.
    assert edge(capsys, desktop, "set", "balanced")[0] == 0
    assert limits(nvml) == [337500, 262500]
    saved = json.loads(state_file(tmp_path).read_text())["gpus"]
    assert {uuid: entry["limit_mw"] for uuid, entry in saved.items()} == {g.uuid: g.default_mw for g in nvml.gpus}
    code, out, _ = edge(capsys, desktop, "status")
    assert out.splitlines()[0] == (
        "GPU 0 NVIDIA GeForce RTX 4090: 35.0W now, limit 337.5W (balanced), default 450W, accepts 150-600W; "
        "clocks not locked by edge"
    )
    # Every command opens NVML afresh: what to restore comes from the state file only.
    code, out, _ = edge(capsys, desktop, "restore")
    assert (code, out.splitlines()) == (
        0,
        [
            "GPU 0 NVIDIA GeForce RTX 4090: power limit back to 450W",
            "GPU 1 NVIDIA GeForce RTX 3090: power limit back to 350W",
        ],
    )
    assert limits(nvml) == [450000, 350000]
    assert not state_file(tmp_path).exists()
    assert (
        edge(capsys, desktop, "restore")[1]
        == f"nothing to restore: no change by edge recorded in {state_file(tmp_path)}\n"
    )


def test_watts_and_one_gpu(nvml: FakeNvml, desktop: Path, capsys) -> None:
    code, out, _ = edge(capsys, desktop, "set", "180W", "--gpu", "1")
    assert (code, limits(nvml)) == (0, [450000, 180000])
    assert out == (
        "GPU 1 NVIDIA GeForce RTX 3090: power limit 350W -> 180W (180W), verified; `edge power restore` puts 350W back\n"
    )
    assert edge(capsys, desktop, "set", "max", "--gpu", nvml.gpus[1].uuid)[0] == 0
    assert limits(nvml) == [450000, 350000]
    code, _, err = edge(capsys, desktop, "set", "eco", "--gpu", "7")
    assert (code, err) == (
        7,
        f"error: --gpu 7: no such GPU; this machine has 0={nvml.gpus[0].uuid}, 1={nvml.gpus[1].uuid}\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["set", "700W"],
            "700W is outside what GPU 0 (NVIDIA GeForce RTX 4090) accepts: 150-600W "
            "(nvmlDeviceGetPowerManagementLimitConstraints)",
        ),
        (
            ["set", "420W"],
            "420W is outside what GPU 1 (NVIDIA GeForce RTX 3090) accepts: 100-400W "
            "(nvmlDeviceGetPowerManagementLimitConstraints)",
        ),
        (["set", "MAXN"], "unknown power mode 'MAXN': desktop GPUs take max, balanced, eco or a wattage such as 180W"),
        (["clocks", "on", "--sysroot", "/"], None),
        (
            ["clocks", "lock", "1500,9000"],
            "clocks lock 1500,9000: GPU 0 (NVIDIA GeForce RTX 4090) runs at most 3105 MHz",
        ),
    ],
)
def test_refused_before_anything_changes(args, message, nvml: FakeNvml, desktop: Path, tmp_path: Path, capsys) -> None:
    if message is None:  # `clocks on` locks at each GPU's maximum: no refusal; undone by restore
        assert edge(capsys, desktop, *args[:2])[0] == 0
        assert [g.locked for g in nvml.gpus] == [(3105, 3105), (2100, 2100)]
        assert edge(capsys, desktop, "restore")[0] == 0
        assert [g.locked for g in nvml.gpus] == [None, None] and limits(nvml) == [450000, 350000]
        return
    code, out, err = edge(capsys, desktop, *args)
    assert (code, out, err) == (7, "", f"error: {message}\n")
    assert nvml.setters == [] and not state_file(tmp_path).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["clocks", "lock", "1800"], "clocks lock 1800: expected MIN,MAX in MHz, e.g. clocks lock 1200,1800"),
        (["clocks", "lock", "1800,1200"], "clocks lock 1800,1200: expected MIN <= MAX, both in MHz"),
        (["clocks", "reset", "1,2"], "clocks reset takes no range (only `clocks lock MIN,MAX` does)"),
    ],
)
def test_bad_clock_ranges(args, message, nvml: FakeNvml, desktop: Path, capsys) -> None:
    assert edge(capsys, desktop, *args) == (2, "", f"error: {message}\n")
    assert nvml.setters == []


def test_locked_clocks_and_reset(nvml: FakeNvml, desktop: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = edge(capsys, desktop, "clocks", "lock", "1200,1800", "--gpu", "0")
    assert (code, out) == (0, "GPU 0 NVIDIA GeForce RTX 4090: graphics clock locked to 1200-1800 MHz\n")
    assert [g.locked for g in nvml.gpus] == [(1200, 1800), None]
    assert "clocks locked by edge" in edge(capsys, desktop, "status")[1].splitlines()[0]
    code, out, _ = edge(capsys, desktop, "clocks", "reset", "--gpu", "0")
    assert (code, out) == (0, "GPU 0 NVIDIA GeForce RTX 4090: graphics clock released\n")
    assert nvml.gpus[0].locked is None and not state_file(tmp_path).exists()


def test_no_root_is_one_line_and_exit_7(nvml: FakeNvml, desktop: Path, tmp_path: Path, capsys) -> None:
    nvml.root = False
    assert edge(capsys, desktop, "set", "eco") == (
        7,
        "",
        f"error: setting the power limit of GPU 0 (NVIDIA GeForce RTX 4090) needs root (NVML: Insufficient "
        f"Permissions); {SUDO}\n",
    )
    assert limits(nvml) == [450000, 350000] and not state_file(tmp_path).exists()
    code, _, err = edge(capsys, desktop, "clocks", "lock", "1000,1500")
    assert (code, err) == (
        7,
        f"error: locking the clocks of GPU 0 (NVIDIA GeForce RTX 4090) needs root (NVML: Insufficient Permissions); {SUDO}\n",
    )
    assert not state_file(tmp_path).exists()
    assert edge(capsys, desktop, "status")[0] == 0  # reading needs no root


def test_a_gpu_without_power_control(nvml: FakeNvml, desktop: Path, capsys) -> None:
    laptop = Gpu("NVIDIA GeForce RTX 4070 Laptop GPU", "GPU-4070cccc-0000-0000-0000-000000000000", 0, 0, 0)
    laptop.limit_supported = laptop.clocks_supported = False
    nvml.gpus = [laptop]
    code, out, _ = edge(capsys, desktop, "status")
    assert (code, out) == (
        0,
        "GPU 0 NVIDIA GeForce RTX 4070 Laptop GPU: 0.0W now, limit n/a (unknown), default n/a; clocks not locked by edge\n",
    )
    code, _, err = edge(capsys, desktop, "set", "eco")
    assert (code, err) == (
        7,
        "error: GPU 0 (NVIDIA GeForce RTX 4070 Laptop GPU) reports no default power limit through NVML\n",
    )
    code, _, err = edge(capsys, desktop, "clocks", "lock", "300,900")
    assert code == 7 and err.startswith(
        "error: locking the clocks of GPU 0 (NVIDIA GeForce RTX 4070 Laptop GPU): this GPU does not support it "
        "through NVML (NVML: Not Supported)"
    )


def test_eco_is_clamped_to_what_the_card_accepts(nvml: FakeNvml, desktop: Path, capsys) -> None:
    nvml.gpus = [Gpu("NVIDIA RTX A2000 12GB", "GPU-a2000ddd-0000-0000-0000-000000000000", 70000, 70000, 70000, 1200)]
    code, out, _ = edge(capsys, desktop, "modes")
    assert code == 0
    assert out.splitlines()[0] == (
        "GPU 0 NVIDIA RTX A2000 12GB: max 70W (current), balanced 70W, eco 70W; accepts 70-70W"
    )
    assert edge(capsys, desktop, "set", "eco")[0] == 0 and nvml.gpus[0].limit_mw == 70000


@pytest.mark.parametrize(
    "args", [["status"], ["status", "--json"], ["modes"], ["set", "eco"], ["restore"], ["clocks", "lock", "1,2"]]
)
def test_neither_jetson_nor_nvml_is_one_line_and_exit_8(args, monkeypatch, desktop: Path, capsys) -> None:
    monkeypatch.setattr("edge.power.nvml.load_nvml", lambda: FakeNvml([], driver=False))
    assert edge(capsys, desktop, *args) == (
        8,
        "",
        "error: no power control on this machine: not a Jetson (no /etc/nv_tegra_release and no tegra entry in "
        f"/proc/device-tree/compatible under {desktop}) and no GPU through NVML (NVML is not available (NVML Shared "
        "Library Not Found): no NVIDIA driver on this machine)\n",
    )


class Caps:
    def __init__(self) -> None:
        self.caps: list[float | None] = []

    def set_fps_cap(self, fps: float | None) -> None:
        self.caps.append(fps)

    def stats(self) -> PipelineStats:
        return PipelineStats()


def test_run_policy_on_a_desktop(nvml: FakeNvml, desktop: Path, tmp_path: Path) -> None:
    """The run config's power section on NVML: balanced while busy, eco when idle, the hand-set 400 W back at stop."""
    clock = [0.0]
    events: list[tuple[str, str, dict[str, Any]]] = []
    nvml.gpus[0].limit_mw = 400000  # set by hand before the run: what the run must put back
    policy = PowerPolicy(
        PowerConfig.from_dict({"mode": "balanced", "idle_mode": "eco", "idle_after": "10s", "clocks": "on"}),
        clock=lambda: clock[0],
        events=lambda kind, msg, data: events.append((kind, msg, data)),
        sysroot=desktop,
        threaded=False,
        gpus=["0"],
    )
    caps = Caps()
    policy.on_start(PipelineStats(), caps)
    assert isinstance(policy.controller, DesktopController)
    assert limits(nvml) == [337500, 350000] and nvml.gpus[0].locked == (3105, 3105)
    clock[0] = 10.0
    policy.evaluate()
    assert limits(nvml) == [225000, 350000]
    assert events[-1][1] == "idle -> eco: no detections for 10s (idle_after 10s)"
    # While running, a crash would leave the state file: `edge power restore` would put 400 W back.
    saved = json.loads(state_file(tmp_path).read_text())["gpus"]
    assert saved == {
        nvml.gpus[0].uuid: {"index": 0, "name": nvml.gpus[0].name, "limit_mw": 400000, "clocks_locked": True}
    }
    policy.on_stop(PipelineStats())
    assert limits(nvml) == [400000, 350000] and nvml.gpus[0].locked is None
    assert not state_file(tmp_path).exists()  # a clean stop leaves nothing to restore
    assert [m for _, m, _ in events] == [
        "power mode 400W -> balanced (start)",
        "clocks pinned (start)",
        "idle -> eco: no detections for 10s (idle_after 10s)",
        "clocks restored (stop)",
        "power mode eco -> 400W (stop)",
    ]


def test_nvml_power_reads_energy_and_refuses_a_missing_gpu(nvml: FakeNvml) -> None:
    nvml.gpus[0].energy_mj, nvml.gpus[1].energy_mj = 5000, 7000
    with NvmlPower() as power:
        assert power.energy_mj() == 12000
        assert power.power_w() == 70.0
    with pytest.raises(PowerError, match="no such GPU"):
        NvmlPower(["GPU-nope"])
    assert nvml.inits == 0  # every open is closed, the failed one too


def test_the_stand_in_has_pynvmls_signatures() -> None:
    """Every NVML call the stand-in offers exists in the installed nvidia-ml-py with the same parameters."""
    import inspect

    import pynvml

    names = [n for n in dir(FakeNvml) if n.startswith("nvml")]
    assert len(names) == 19
    for name in names:
        real = getattr(pynvml, name)
        ours = list(inspect.signature(getattr(FakeNvml([]), name)).parameters)
        theirs = list(inspect.signature(real).parameters)
        assert len(ours) == len(theirs), f"{name}: {ours} vs pynvml's {theirs}"
    for exc in ("NVMLError_NoPermission", "NVMLError_NotSupported", "NVMLError_InvalidArgument"):
        assert getattr(FakeNvml, exc, getattr(pynvml, exc)) is getattr(pynvml, exc)
