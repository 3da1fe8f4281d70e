"""Changing mode and clocks through the nvpmodel / jetson_clocks stand-ins (the hardware boundary).

Every error path asserts its message; every change is checked on the sysroot's files and in the
stand-ins' call log.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.errors import NotJetsonError, PowerError
from edge.power import device
from edge.power.control import CliController, _jtop_factory, open_controller
from edge.power.device import Mode

from .conftest import CPU_MIN, GPU_MIN, MODULES, build_sysroot, mode_gpu_max

SUDO = "run it with sudo, or install jetson-stats so that its jtop service (which runs as root) makes the change"


@pytest.mark.parametrize("module", list(MODULES))
def test_set_every_mode_by_name(module: str, make_jetson) -> None:
    jetson = make_jetson(module)
    ctl = open_controller(jetson.root)
    assert ctl.backend == "cli"  # a test sysroot never talks to a real jtop service
    assert ctl.current_mode() == Mode(jetson.default, jetson.modes[jetson.default])
    expected = []
    current = jetson.default
    for mode_id, name in [*jetson.modes.items(), (jetson.default, jetson.modes[jetson.default])]:
        assert ctl.set_mode(name) == Mode(mode_id, name)
        assert jetson.mode_id() == mode_id
        assert ctl.current_mode() == Mode(mode_id, name)
        if mode_id != current:  # switching to the current mode runs nothing
            expected.append(["nvpmodel", "-m", str(mode_id)])
        current = mode_id
    assert [c for c in jetson.calls() if "-m" in c] == expected


def test_super_flash_modes_resolve_to_their_own_ids(make_jetson) -> None:
    jetson = make_jetson("orin-nano-8gb", super_flash=True)
    ctl = CliController(jetson.root, euid=0)
    assert ctl.set_mode("MAXN_SUPER") == Mode(2, "MAXN_SUPER")
    assert jetson.mode_id() == 2
    assert ctl.set_mode("0") == Mode(0, "15W")  # an id is accepted too


def test_unknown_mode_lists_the_valid_names(make_jetson) -> None:
    jetson = make_jetson("orin-nano-4gb")
    with pytest.raises(PowerError) as err:
        CliController(jetson.root, euid=0).set_mode("MAXN")
    assert str(err.value) == (
        "unknown power mode 'MAXN': this device's modes are 10W, 7W_AI, 7W_CPU (nvpmodel -p --verbose)"
    )
    assert jetson.changes() == []


@pytest.mark.parametrize(
    ("behaviour", "euid", "message"),
    [
        ("ok", 1000, f"switching the power mode to 7W needs root (running as uid 1000); {SUDO}"),
        (
            "noroot",
            0,
            "switching the power mode to 7W: permission denied "
            f"(NVPM ERROR: Error opening /sys/kernel/nvpmodel_emc_cap/emc_iso_cap: 13); {SUDO}",
        ),
        (
            "reboot",
            0,
            "switching the power mode to 7W: reboot required; nothing was changed. "
            "Run `sudo nvpmodel -m 1` by hand, answer YES and let the device reboot",
        ),
        (
            "fail",
            0,
            "switching the power mode to 7W: nvpmodel -m 1 failed: NVPM ERROR: failed to write PARAM GPU: "
            "ARG MAX_FREQ: PATH /sys/devices/gpu.0/devfreq/17000000.ga10b/max_freq",
        ),
        (
            "ignore",
            0,
            "switching the power mode to 7W: nvpmodel reported success but the device is in 15W (id 0); "
            "rolled back to 15W",
        ),
    ],
)
def test_failed_switch_is_reported_and_rolled_back(
    behaviour: str, euid: int, message: str, make_jetson, monkeypatch: pytest.MonkeyPatch
) -> None:
    jetson = make_jetson("orin-nano-8gb")
    monkeypatch.setenv("STANDIN_NVPMODEL", behaviour)
    monkeypatch.setenv("STANDIN_NVPMODEL_IDS", "1")  # only the switch to 7W misbehaves; rolling back works
    with pytest.raises(PowerError) as err:
        CliController(jetson.root, euid=euid, timeout=20).set_mode("7W")
    assert str(err.value) == message
    assert jetson.mode_id() == 0  # still (or again) in the mode it started in
    sets = [c for c in jetson.calls() if "-m" in c]
    expected = {
        "ok": [],  # missing root is caught before running anything
        "noroot": [["nvpmodel", "-m", "1"]],
        "reboot": [["nvpmodel", "-m", "1"]],  # the prompt read EOF: no hang, no YES
        "fail": [["nvpmodel", "-m", "1"], ["nvpmodel", "-m", "0"]],  # half-done switch rolled back
        "ignore": [["nvpmodel", "-m", "1"]],
    }[behaviour]
    assert sets == expected


def test_a_hung_nvpmodel_is_killed_after_the_timeout(make_jetson, monkeypatch: pytest.MonkeyPatch) -> None:
    jetson = make_jetson("orin-nano-8gb")
    monkeypatch.setenv("STANDIN_NVPMODEL", "hang")
    monkeypatch.setenv("STANDIN_NVPMODEL_IDS", "1")
    with pytest.raises(PowerError) as err:
        CliController(jetson.root, euid=0, timeout=1.5).set_mode("7W")
    assert str(err.value) == (
        "nvpmodel -m 1 did not finish within 1.5s (killed); "
        "if it waits for a reboot confirmation, run it by hand and answer the prompt"
    )
    assert jetson.mode_id() == 0


def test_without_nvpmodel_modes_and_mode_come_from_the_files(make_jetson, standin_bin: Path) -> None:
    jetson = make_jetson("agx-orin-64gb", mode_id=1)
    (standin_bin / "nvpmodel").unlink()
    ctl = CliController(jetson.root, euid=0)
    modes = ctl.modes()
    assert modes.source == "/etc/nvpmodel.conf"
    assert modes.names == ["MAXN", "MODE_15W", "MODE_30W", "MODE_50W"]
    assert ctl.current_mode() == Mode(1, "MODE_15W")
    with pytest.raises(PowerError) as err:
        ctl.set_mode("MAXN")
    assert str(err.value) == ("nvpmodel not found on PATH: it comes with JetPack (package nvidia-l4t-tools / nvpmodel)")


def test_clocks_on_off_restore(make_jetson) -> None:
    jetson = make_jetson("orin-nx-16gb")
    ctl = CliController(jetson.root, euid=0)
    assert ctl.clocks_pinned() is False
    ctl.set_clocks(True)
    assert ctl.clocks_pinned() is True
    assert jetson.gpu_min() == jetson.gpu_max() == mode_gpu_max("15W")
    ctl.set_clocks(True)  # already pinned: nothing runs
    ctl.set_clocks(False)
    assert ctl.clocks_pinned() is False
    assert jetson.gpu_min() == GPU_MIN
    cpu0 = jetson.root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq"
    assert int(cpu0.read_text()) == CPU_MIN
    state = str(ctl.state_file)
    assert jetson.changes() == [
        ["jetson_clocks", "--store", state],
        ["jetson_clocks"],
        ["jetson_clocks", "--restore", state],
    ]
    assert not ctl.state_file.exists()
    ctl.set_clocks(True)
    assert jetson.gpu_min() == mode_gpu_max("15W")
    # A new mode while pinned, as jtop does it: release (restore), switch, store the new mode's own
    # state, pin again at the new mode's maximum, which the nvpmodel stand-in changed.
    for name, mode_id in (("MAXN", 0), ("10W", 1)):
        before = len(jetson.changes())
        ctl.set_mode(name)
        assert jetson.changes()[before:] == [
            ["jetson_clocks", "--restore", state],
            ["nvpmodel", "-m", str(mode_id)],
            ["jetson_clocks", "--store", state],
            ["jetson_clocks"],
        ]
        assert ctl.clocks_pinned() is True
        assert jetson.gpu_min() == jetson.gpu_max() == mode_gpu_max(name)
    assert mode_gpu_max("MAXN") > mode_gpu_max("15W") > mode_gpu_max("10W")
    ctl.restore_clocks()
    assert ctl.clocks_pinned() is False
    assert jetson.gpu_min() == GPU_MIN and jetson.gpu_max() == mode_gpu_max("10W")


def test_stale_stored_clocks_do_not_block_pinning(make_jetson) -> None:
    """After a reboot or crash while pinned, the stored file is still there and the clocks are not pinned:
    `jetson_clocks --store FILE` would ask "Can I overwrite it? Y/N" and exit 1, for good."""
    jetson = make_jetson("orin-nx-16gb")
    ctl = CliController(jetson.root, euid=0)
    ctl.state_file.parent.mkdir(parents=True)
    ctl.state_file.write_text("/sys/class/devfreq/17000000.gpu/min_freq:714000000\n")  # pinned values
    direct = subprocess.run(
        ["jetson_clocks", "--store", str(ctl.state_file)], stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    assert (direct.returncode, direct.stdout.splitlines()) == (
        1,
        [
            f"File {ctl.state_file} already exists. Can I overwrite it? Y/N:",
            f"Error: file {ctl.state_file} already exists!",
        ],
    )
    ctl.set_clocks(True)
    assert ctl.clocks_pinned() is True
    ctl.set_clocks(False)
    assert jetson.gpu_min() == GPU_MIN  # the fresh state, not the stale pinned values


def test_jetson_clocks_show_is_read_where_sysfs_is_not(make_jetson, monkeypatch) -> None:
    jetson = make_jetson("orin-nano-8gb")
    show = subprocess.run(["jetson_clocks", "--show"], capture_output=True, text=True, check=True).stdout
    assert show.splitlines()[-1] == "NV Power Mode: 15W"
    assert f"GPU MinFreq={GPU_MIN} MaxFreq={mode_gpu_max('15W')} CurrentFreq={GPU_MIN}" in show
    assert device.parse_jetson_clocks_show(show) is False
    CliController(jetson.root, euid=0).set_clocks(True)
    show = subprocess.run(["jetson_clocks", "--show"], capture_output=True, text=True, check=True).stdout
    assert device.parse_jetson_clocks_show(show) is True
    # A root without readable sysfs (a container): the controller asks jetson_clocks --show.
    elsewhere = jetson.root.parent / "no-sysfs"
    build = build_sysroot(elsewhere, "orin-nano-8gb")
    shutil.rmtree(build.root / "sys")
    assert device.clocks_pinned(elsewhere) is None
    assert CliController(elsewhere, euid=0).clocks_pinned() is True  # the stand-in reads STANDIN_SYSROOT
    assert CliController(elsewhere, euid=1000).clocks_pinned() is None  # --show needs root


@pytest.mark.parametrize(
    ("action", "behaviour", "message"),
    [
        ("restore", "ok", "restoring the clocks: nothing stored at {state} (`edge power clocks on` stores it)"),
        (
            "off-pinned-elsewhere",
            "ok",
            "releasing the clocks: they were pinned outside edge and no stored state exists at {state}; "
            "run `sudo jetson_clocks --restore FILE` with the file stored before pinning, or reboot",
        ),
        (
            "on",
            "noroot",
            "storing the clocks: permission denied (/usr/bin/jetson_clocks: line 421: "
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_min_freq: Permission denied); " + SUDO,
        ),
        ("on-uid", "ok", f"pinning the clocks needs root (running as uid 1000); {SUDO}"),
        ("on", "ignore", "pinning the clocks: jetson_clocks ran but the clocks are not pinned; restored them"),
    ],
)
def test_clock_errors(action: str, behaviour: str, message: str, make_jetson, monkeypatch) -> None:
    jetson = make_jetson("orin-nx-8gb")
    monkeypatch.setenv("STANDIN_JETSON_CLOCKS", behaviour)
    ctl = CliController(jetson.root, euid=1000 if action == "on-uid" else 0)
    if action == "off-pinned-elsewhere":
        (jetson.root / "sys/class/devfreq/17000000.gpu/min_freq").write_text(f"{jetson.gpu_max()}\n")
        for n in range(4):
            (jetson.root / f"sys/devices/system/cpu/cpu{n}/cpufreq/scaling_min_freq").write_text("1984000\n")
    with pytest.raises(PowerError) as err:
        if action == "restore":
            ctl.restore_clocks()
        else:
            ctl.set_clocks(action != "off-pinned-elsewhere")
    assert str(err.value) == message.format(state=ctl.state_file)


def test_not_a_jetson_refuses_a_controller(desktop: Path) -> None:
    with pytest.raises(NotJetsonError) as err:
        open_controller(desktop)
    assert "not a Jetson" in str(err.value) and err.value.exit_code == 8


def test_jtop_backend_needs_the_real_root_and_jetson_stats(make_jetson) -> None:
    jetson = make_jetson("orin-nano-8gb")
    with pytest.raises(PowerError) as err:
        open_controller(jetson.root, "jtop")
    assert str(err.value) == (
        f"--backend jtop talks to the jtop service of this machine, not to files under {jetson.root}; "
        "use --backend cli with --sysroot"
    )
    if importlib.util.find_spec("jtop") is None:  # jetson-stats is not installed here: auto means CLI
        assert _jtop_factory() == (None, None)
    assert jetson.changes() == []


def test_a_jtop_version_mismatch_is_named_when_root_is_missing(make_jetson, monkeypatch) -> None:
    """jetson-stats' client refuses a service of another version; the fallback must not just say "needs root"."""
    import sys
    import types

    class Mismatch(Exception):
        pass

    class Client:  # what jtop.jtop does when service and client versions differ (raises on connect)
        def __enter__(self) -> Client:
            raise Mismatch("Mismatch of jtop version between service (4.2.12) and client (4.3.2)")

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=Client))
    factory, why = _jtop_factory()
    assert factory is None and why is not None
    assert why.startswith("Mismatch of jtop version between service (4.2.12) and client (4.3.2) (the jetson-stats")
    jetson = make_jetson("orin-nano-8gb")
    ctl = CliController(jetson.root, euid=1000)
    ctl.jtop_note = why
    with pytest.raises(PowerError) as err:
        ctl.set_mode("7W")
    assert str(err.value).startswith(
        f"switching the power mode to 7W needs root (running as uid 1000); jtop was not used: {why}; "
    )
    assert jetson.changes() == []
