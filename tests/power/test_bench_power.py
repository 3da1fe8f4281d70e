"""``edge bench --power``: fps, W and fps/W per desktop power mode, side by side, limits put back.

The GPU is the NVML stand-in (``nvml_standin.py``); a workload stand-in models a GPU-bound run that
draws its whole power limit and slows down when the limit drops (figures chosen by hand: 1000 fps at
450 W, 800 fps at 225 W). Expected W, fps/W and ratios are worked by hand from those figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.cli import main
from edge.power.bench import compare_power, format_comparison, modes_to_compare
from tests.runtime.bundles import build_retinaface

from .nvml_standin import FakeNvml, rtx_box


class Workload:
    """A benchmark stand-in: two seconds on an injected clock, energy = limit x time, fps by limit."""

    def __init__(self, fake: FakeNvml) -> None:
        self.fake = fake
        self.t = 100.0

    def clock(self) -> float:
        return self.t

    def __call__(self) -> dict[str, Any]:
        gpu = self.fake.gpus[0]
        self.t += 2.0
        gpu.energy_mj += gpu.limit_mw * 2  # mW x 2 s = mJ
        return {"throughput_qps": 1000.0 if gpu.limit_mw >= 450000 else 800.0}


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNvml:
    fake = FakeNvml(rtx_box())
    monkeypatch.setattr("edge.power.nvml.load_nvml", lambda: fake)
    monkeypatch.setenv("EDGE_STATE_DIR", str(tmp_path / "state"))
    return fake


def test_modes_to_compare() -> None:
    assert modes_to_compare("eco") == ["max", "eco"]
    assert modes_to_compare("eco,balanced,max") == ["max", "eco", "balanced"]


def test_eco_beside_max(nvml: FakeNvml, tmp_path: Path) -> None:
    work = Workload(nvml)
    report = compare_power("eco", work, gpus=["0"], clock=work.clock)
    assert [(r["mode"], r["limit_w"], r["fps"], r["watts"]) for r in report["runs"]] == [
        ("max", 450.0, 1000.0, 450.0),
        ("eco", 225.0, 800.0, 225.0),
    ]
    assert format_comparison(report).splitlines() == [
        "power         limit        fps        W    fps/W  vs max",
        "max            450W     1000.0    450.0     2.22",
        "eco            225W      800.0    225.0     3.56  fps 80 %, fps/W 160 %",
    ]
    assert [g.limit_mw for g in nvml.gpus] == [450000, 350000]  # put back; the other GPU never touched
    assert not (tmp_path / "state" / "nvml-power.json").exists()


def test_limits_go_back_when_the_benchmark_fails(nvml: FakeNvml) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("engine fell over")

    nvml.gpus[0].limit_mw = 400000
    with pytest.raises(RuntimeError):
        compare_power("eco", broken)
    assert [g.limit_mw for g in nvml.gpus] == [400000, 350000]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_retinaface(tmp_path_factory.mktemp("bench-power") / "faces.bundle")


def test_cli_compares_where_nvml_answers(bundle: Path, nvml: FakeNvml, capsys) -> None:
    args = ["bench", str(bundle), "--iterations", "2", "--duration", "0", "--warmup", "0", "--power", "eco", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert [(r["mode"], r["limit_w"]) for r in report["runs"]] == [("max", 800.0), ("eco", 400.0)]
    assert all(r["fps"] == r["benchmark"]["throughput_qps"] > 0 for r in report["runs"])
    assert "power mode eco: limit 400W" in captured.err
    assert [g.limit_mw for g in nvml.gpus] == [450000, 350000]


def test_cli_skips_with_the_reason_without_nvml(bundle: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("edge.power.nvml.load_nvml", lambda: FakeNvml([], driver=False))
    assert main(["bench", str(bundle), "--iterations", "2", "--duration", "0", "--warmup", "0", "--power", "eco"]) == 0
    captured = capsys.readouterr()
    assert (
        "power: no power comparison: NVML is not available (NVML Shared Library Not Found): "
        "no NVIDIA driver on this machine"
    ) in captured.err
    assert "Throughput: " in captured.out
