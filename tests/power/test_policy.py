"""The power policy's state machine, on a sysroot with the nvpmodel/jetson_clocks stand-ins.

Time is an injected clock (no sleeps); the policy runs unthreaded and is driven through the
observer calls a pipeline makes, plus ``telemetry.sample()`` for a thermal reading.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.errors import NotJetsonError, PowerError
from edge.observer import FrameResult, PipelineStats
from edge.power.config import PowerConfig
from edge.power.control import CliController
from edge.power.policy import PowerPolicy
from edge.results import Detections


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FpsCap:
    """The one thing a policy may change in a pipeline (PipelineControl), remembered for the test."""

    def __init__(self) -> None:
        self.caps: list[float | None] = []

    def set_fps_cap(self, fps: float | None) -> None:
        self.caps.append(fps)

    def stats(self) -> PipelineStats:
        return PipelineStats()


def frame(n_detections: int) -> FrameResult:
    dets = Detections(
        np.tile(np.array([[10, 10, 50, 50]], np.float32), (n_detections, 1)),
        np.full(n_detections, 0.9, np.float32),
        np.zeros(n_detections, np.int64),
    )
    return FrameResult(0, "test://", 0.0, 0.0, dets)


class Run:
    """One policy on one sysroot, with its clock, fps control and recorded events."""

    def __init__(self, jetson: Any, euid: int = 0, threaded: bool = False, **power: Any) -> None:
        self.jetson = jetson
        self.clock = Clock()
        self.control = FpsCap()
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.policy = PowerPolicy(
            PowerConfig.from_dict(power),
            CliController(jetson.root, euid=euid) if jetson is not None else None,
            clock=self.clock,
            events=lambda kind, msg, data: self.events.append((kind, msg, data)),
            sysroot=jetson.root if jetson is not None else "/nonexistent",
            threaded=threaded,
        )

    def start(self) -> None:
        self.policy.on_start(PipelineStats(), self.control)

    def at(self, t: float, detections: int = 0) -> None:
        self.clock.t = 1000.0 + t
        self.policy.on_frame(frame(detections), PipelineStats())

    def messages(self) -> list[str]:
        return [f"{k}: {m}" for k, m, _ in self.events]


def test_start_applies_mode_and_clocks_and_stop_restores_them(make_jetson) -> None:
    jetson = make_jetson("orin-nano-8gb", super_flash=True)  # boots in 25W (id 1)
    run = Run(jetson, mode="MAXN_SUPER", clocks="on")
    run.start()
    assert jetson.mode_id() == 2
    assert run.policy.controller is not None and run.policy.controller.clocks_pinned() is True
    assert run.policy.status()["mode"] == "MAXN_SUPER"
    run.policy.on_stop(PipelineStats())
    assert jetson.mode_id() == 1
    assert run.policy.controller.clocks_pinned() is False
    assert run.messages() == [
        "power: power mode 25W -> MAXN_SUPER (start)",
        "power: clocks pinned (start)",
        "power: clocks restored (stop)",
        "power: power mode MAXN_SUPER -> 25W (stop)",
    ]
    run.policy.close()  # idempotent: nothing more runs
    assert [c for c in jetson.changes() if c[0] == "nvpmodel"] == [["nvpmodel", "-m", "2"], ["nvpmodel", "-m", "1"]]


def test_idle_switches_down_and_the_first_detection_switches_back(make_jetson) -> None:
    jetson = make_jetson("agx-orin-64gb", mode_id=0)
    run = Run(jetson, mode="MAXN", idle_mode="MODE_15W", idle_after="30s", fps_idle=2)
    run.start()
    run.at(10)
    run.at(29.9)
    assert jetson.mode_id() == 0 and run.control.caps == [] and run.events == []
    run.at(30)
    assert jetson.mode_id() == 1
    assert run.control.caps == [2.0]
    kind, message, data = run.events[-1]
    assert (kind, message) == ("power", "idle -> MODE_15W: no detections for 30s (idle_after 30s)")
    assert data == {
        "state": "idle",
        "reason": "no detections for 30s (idle_after 30s)",
        "from": "MAXN",
        "to": "MODE_15W",
        "fps_cap": 2.0,
    }
    run.at(40)  # still nothing: no new switch
    assert len(run.events) == 1
    run.at(45, detections=1)
    assert jetson.mode_id() == 0
    assert run.control.caps == [2.0, None]
    assert run.messages()[-1] == "power: active -> MAXN: detection"
    run.at(74)
    assert jetson.mode_id() == 0
    run.at(75)
    assert jetson.mode_id() == 1
    run.policy.on_stop(PipelineStats())
    assert jetson.mode_id() == 0  # the mode before the run
    assert run.control.caps == [2.0, None, 2.0, None]


def test_thermal_step_down_with_hysteresis(make_jetson) -> None:
    jetson = make_jetson("agx-orin-64gb", mode_id=0)
    run = Run(jetson, thermal_limit_c=85)  # hysteresis 5 by default; the next lower mode from MAXN
    run.start()
    for temp, mode_id in [(84000, 0), (86500, 3), (82000, 3), (80000, 0), (85000, 0), (85500, 3)]:
        jetson.set_temp("gpu-thermal", temp)
        run.policy.telemetry.sample()
        assert jetson.mode_id() == mode_id, temp
    assert run.messages() == [
        "thermal: hot -> MODE_50W: gpu-thermal at 86.5C > limit 85C",
        "thermal: cool -> MAXN: hottest zone gpu-thermal at 80.0C <= 80C",
        "thermal: hot -> MODE_50W: gpu-thermal at 85.5C > limit 85C",
    ]
    assert run.policy.status()["thermal_throttled"] is True
    assert run.policy.status()["telemetry"]["temperatures_c"]["gpu-thermal"] == 85.5
    run.policy.close()
    assert jetson.mode_id() == 0


def test_the_lowest_power_request_wins(make_jetson) -> None:
    jetson = make_jetson("agx-orin-64gb", mode_id=0)
    run = Run(jetson, idle_mode="MODE_15W", idle_after=30, thermal_limit_c=85, thermal_mode="MODE_30W")
    run.start()
    jetson.set_temp("tj-thermal", 90000)
    run.policy.telemetry.sample()
    assert jetson.mode_id() == 2  # hot: MODE_30W
    run.at(31)
    assert jetson.mode_id() == 1  # hot and idle: MODE_15W draws less
    run.at(32, detections=3)
    assert jetson.mode_id() == 2  # active again but still hot
    jetson.set_temp("tj-thermal", 50000)
    run.policy.telemetry.sample()
    assert jetson.mode_id() == 0  # cool: back to the base (the mode at start)
    run.policy.close()


def test_a_failed_switch_is_an_event_and_the_run_goes_on(make_jetson, monkeypatch) -> None:
    jetson = make_jetson("orin-nano-4gb")
    monkeypatch.setenv("STANDIN_NVPMODEL", "reboot")
    monkeypatch.setenv("STANDIN_NVPMODEL_IDS", "1")
    run = Run(jetson, idle_mode="7W_AI", idle_after="5s", fps_idle=1)
    run.start()
    run.at(6)
    assert jetson.mode_id() == 0
    assert run.control.caps == [1.0]  # the fps cap still applies
    _, message, data = run.events[-1]
    assert data["error"] == (
        "switching the power mode to 7W_AI: reboot required; nothing was changed. "
        "Run `sudo nvpmodel -m 1` by hand, answer YES and let the device reboot"
    )
    assert message.startswith("idle -> 7W_AI: no detections for 6s (idle_after 5s) (FAILED: ")
    run.policy.close()
    assert run.control.caps == [1.0, None]


@pytest.mark.parametrize(
    ("module", "power", "euid", "error", "message"),
    [
        (
            "orin-nano-8gb",
            {"mode": "MAXN"},
            0,
            PowerError,
            "unknown power mode 'MAXN': this device's modes are 15W, 7W (nvpmodel -p --verbose)",
        ),
        (
            "orin-nano-8gb",
            {"mode": "15W", "idle_mode": "5W", "idle_after": 10},
            0,
            PowerError,
            "unknown power mode '5W': this device's modes are 15W, 7W (nvpmodel -p --verbose)",
        ),
        (
            "orin-nano-8gb",
            {"mode": "7W"},
            1000,
            PowerError,
            "switching the power mode to 7W needs root (running as uid 1000); run it with sudo, or install "
            "jetson-stats so that its jtop service (which runs as root) makes the change",
        ),
        (
            "orin-nano-8gb",
            {"mode": "7W", "thermal_limit_c": 80},
            0,
            PowerError,
            "power.thermal_limit_c: no mode draws less than 7W on this device (15W, 7W); "
            "set power.thermal_mode or pick a higher power.mode",
        ),
        (
            None,
            {"mode": "MAXN"},
            0,
            NotJetsonError,
            "no power control on this machine: not a Jetson (no /etc/nv_tegra_release and no tegra entry in "
            "/proc/device-tree/compatible under {root}) and no GPU through NVML (NVML is not available (NVML "
            "Shared Library Not Found): no NVIDIA driver on this machine); the run config's power section (mode, clocks, "
            "idle_mode, thermal_limit_c) needs one: remove those keys (fps_idle with idle_after works anywhere)",
        ),
    ],
)
def test_start_errors_change_nothing(module, power, euid, error, message, make_jetson, desktop, monkeypatch) -> None:
    from .nvml_standin import FakeNvml  # a desktop without an NVIDIA driver

    monkeypatch.setattr("edge.power.nvml.load_nvml", lambda: FakeNvml([], driver=False))
    jetson = make_jetson(module) if module else None
    run = Run(jetson, euid=euid, **power)
    if jetson is None:
        run.policy.sysroot = desktop
    with pytest.raises(error) as err:
        run.start()
    assert str(err.value) == message.format(root=desktop)
    if jetson is not None:
        assert jetson.changes() == [] and jetson.mode_id() == jetson.default


def test_idle_fps_cap_works_without_a_jetson(desktop: Path) -> None:
    run = Run(None, idle_after="1m", fps_idle=0.5)
    run.policy.sysroot = desktop
    run.start()
    run.at(59)
    run.at(60)
    run.at(61, detections=1)
    assert run.control.caps == [0.5, None]
    assert run.messages() == ["power: idle: no detections for 60s (idle_after 60s)", "power: active: detection"]
    run.policy.close()


def test_threaded_policy_decides_on_its_own_thread(make_jetson) -> None:
    jetson = make_jetson("orin-nano-8gb")
    idle, active = threading.Event(), threading.Event()
    run = Run(jetson, threaded=True, idle_mode="7W", idle_after="30s")
    run.policy.telemetry.interval = 3600
    run.policy.events = lambda kind, msg, data: (idle if data["state"] == "idle" else active).set()
    run.start()
    assert run.policy.telemetry.running
    run.clock.t += 31
    run.policy.telemetry.wake()
    assert idle.wait(10)
    assert jetson.mode_id() == 1
    run.policy.on_frame(frame(1), PipelineStats())  # only records and wakes the policy thread
    assert active.wait(10)
    assert jetson.mode_id() == 0
    run.policy.on_stop(PipelineStats())
    assert not run.policy.telemetry.running


SIGTERM_SCRIPT = """
import signal, sys
from edge.power.config import PowerConfig
from edge.power.policy import PowerPolicy
from edge.observer import PipelineStats

class Control:
    def set_fps_cap(self, fps): pass
    def stats(self): return PipelineStats()

# What `edge run` does with SIGTERM: turn it into a normal exit.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
policy = PowerPolicy(PowerConfig.from_dict({"mode": "7W", "clocks": "on"}), sysroot=sys.argv[1], threaded=False)
policy.on_start(PipelineStats(), Control())
print("ready", flush=True)
sys.stdin.read()
"""


def test_sigterm_restores_mode_and_clocks(make_jetson) -> None:
    jetson = make_jetson("orin-nano-8gb")
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT, str(jetson.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    assert jetson.mode_id() == 1 and jetson.gpu_min() > 306000000
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert proc.stdin is not None
    proc.stdin.close()
    assert jetson.mode_id() == 0
    assert jetson.gpu_min() == 306000000


# Orin Nano Super devkit modes 15W, 25W, MAXN_SUPER, 7W; the test's conf gives 7W another TPC
# power-gating mask than the rest, so nvpmodel (the stand-in models it) asks for a reboot to enter it.
NANO_7W_GATED = {0: 0, 1: 0, 2: 0, 3: 1}
NEEDS_REBOOT = "the modes power-gate different GPU TPCs, TPC_PG_MASK 0 vs 1 in /etc/nvpmodel.conf"


def test_policies_keep_to_modes_that_switch_live(make_jetson) -> None:
    jetson = make_jetson("orin-nano-8gb", super_flash=True, tpc_masks=NANO_7W_GATED)
    run = Run(jetson, mode="15W", idle_mode="7W", idle_after="30s")
    with pytest.raises(PowerError) as err:
        run.start()
    assert str(err.value) == (
        f"power.idle_mode: 7W does not switch live from 15W: nvpmodel asks for a reboot for it ({NEEDS_REBOOT}); "
        "use a mode that switches live from 15W: 15W, 25W, MAXN_SUPER"
    )
    assert jetson.changes() == [] and jetson.mode_id() == 1
    # thermal: the default step-down skips 7W (it would need a reboot); 15W is the next live one below 25W.
    run = Run(jetson, thermal_limit_c=80)
    run.start()
    assert run.policy._thermal_mode is not None and run.policy._thermal_mode.name == "15W"
    run.policy.close()
    run = Run(jetson, mode="15W", thermal_limit_c=80)
    with pytest.raises(PowerError) as err:
        run.start()
    assert str(err.value).startswith("power.thermal_limit_c: every mode that draws less than 15W needs a reboot")


def test_a_switch_that_needs_a_reboot_says_so_before_running_anything(make_jetson) -> None:
    jetson = make_jetson("orin-nano-8gb", super_flash=True, tpc_masks=NANO_7W_GATED)
    ctl = CliController(jetson.root, euid=0)
    with pytest.raises(PowerError) as err:
        ctl.set_mode("7W")
    assert str(err.value) == (
        "switching the power mode 25W -> 7W needs a reboot: the two modes power-gate different GPU TPCs "
        "(TPC_PG_MASK 0 vs 1 in /etc/nvpmodel.conf); nothing was changed. Modes that switch live from 25W: 15W, 25W, MAXN_SUPER. To change for good, run "
        "`sudo nvpmodel -m 3` by hand, answer YES and let the device reboot"
    )
    assert jetson.changes() == []
    # The stand-in models why: nvpmodel itself prompts for the reboot (and declines on a closed stdin).
    out = subprocess.run(["nvpmodel", "-m", "3"], stdin=subprocess.DEVNULL, capture_output=True, text=True).stdout
    assert "NVPM WARN: Reboot required for changing to this power mode: 3" in out and jetson.mode_id() == 1
