"""Reading a Jetson's modes and identity from real-format files (sysroots built in conftest)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edge.errors import NotJetsonError, PowerError
from edge.power import device
from edge.power.device import Mode, ModeList

from .conftest import MODULES, build_sysroot

FLASHES = [(m, False) for m in MODULES] + [(m, True) for m, spec in MODULES.items() if spec[4]]


@pytest.mark.parametrize(("module", "super_flash"), FLASHES)
def test_conf_and_verbose_listing_give_the_modules_modes(
    module: str, super_flash: bool, make_jetson, tmp_path: Path
) -> None:
    jetson = make_jetson(module, super_flash=super_flash)
    conf = device.read_conf(jetson.root)
    assert conf is not None
    assert {m.id: m.name for m in conf.modes} == jetson.modes
    assert conf.default_id == jetson.default
    # The stand-in prints the listing on stderr like the real tool; both streams are read.
    out = subprocess.run(["nvpmodel", "-p", "--verbose"], capture_output=True, text=True, check=True)
    listed = device.parse_nvpmodel_verbose(out.stdout + out.stderr)
    assert listed.modes == conf.modes
    assert listed.default_id == jetson.default
    info = device.require_jetson(jetson.root)
    assert info.super_flash is super_flash
    assert info.release is not None and info.release.startswith("# R36 (release), REVISION: 4.3")
    assert info.compatible[-1] == "nvidia,tegra234"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NV Power Mode: MAXN\n0\n", Mode(0, "MAXN")),
        ("NVPM WARN: fan mode is not set!\nNV Power Mode: MODE_30W\n2\n", Mode(2, "MODE_30W")),
        ("NVPM VERB: Current mode: NV Power Mode: 7W_AI\n1\n", Mode(1, "7W_AI")),
        ("NVPM ERROR: Error opening /sys/kernel/nvpmodel_emc_cap/emc_iso_cap: 13\n", None),
        ("", None),
    ],
)
def test_parse_query(text: str, expected: Mode | None) -> None:
    assert device.parse_nvpmodel_query(text) == expected


NANO_SUPER = ModeList((Mode(0, "15W"), Mode(1, "25W"), Mode(2, "MAXN_SUPER")), 1, "test")


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("25W", Mode(1, "25W")),
        ("maxn_super", Mode(2, "MAXN_SUPER")),
        ("2", Mode(2, "MAXN_SUPER")),  # an id is accepted
        ("MAXN", "unknown power mode 'MAXN': this device's modes are 15W, 25W, MAXN_SUPER (test)"),
        ("7", "unknown power mode '7': this device's modes are 15W, 25W, MAXN_SUPER (test)"),
    ],
)
def test_resolve_by_name(asked: str, expected: Mode | str) -> None:
    if isinstance(expected, Mode):
        assert NANO_SUPER.resolve(asked) == expected
    else:
        with pytest.raises(PowerError) as err:
            NANO_SUPER.resolve(asked)
        assert str(err.value) == expected


@pytest.mark.parametrize(
    ("modes", "start", "lower"),
    [
        ({0: "MAXN", 1: "MODE_15W", 2: "MODE_30W", 3: "MODE_50W"}, "MAXN", "MODE_50W"),
        ({0: "MAXN", 1: "MODE_15W", 2: "MODE_30W", 3: "MODE_50W"}, "MODE_30W", "MODE_15W"),
        ({0: "15W", 1: "25W", 2: "MAXN_SUPER"}, "MAXN_SUPER", "25W"),  # ids do not order power
        ({0: "10W", 1: "7W_AI", 2: "7W_CPU"}, "10W", "7W_AI"),  # a tie goes to the lower id
        ({0: "15W", 1: "7W"}, "7W", None),
    ],
)
def test_next_lower_power_mode(modes: dict[int, str], start: str, lower: str | None) -> None:
    ml = ModeList(tuple(Mode(i, n) for i, n in modes.items()))
    found = ml.lower_than(ml.resolve(start))
    assert (found.name if found else None) == lower


def test_status_file_and_clock_files(make_jetson) -> None:
    jetson = make_jetson("agx-orin-64gb", mode_id=3)
    assert device.read_status_id(jetson.root) == 3
    assert device.clocks_pinned(jetson.root) is False
    (jetson.root / "sys/class/devfreq/17000000.gpu/min_freq").write_text("918000000\n")
    assert device.clocks_pinned(jetson.root) is False  # the CPUs are still free
    for n in range(4):
        (jetson.root / f"sys/devices/system/cpu/cpu{n}/cpufreq/scaling_min_freq").write_text("1984000\n")
    assert device.clocks_pinned(jetson.root) is True
    (jetson.root / "sys/devices/system/cpu/cpu3/online").write_text("0\n")
    (jetson.root / "sys/devices/system/cpu/cpu3/cpufreq/scaling_min_freq").write_text("729600\n")
    assert device.clocks_pinned(jetson.root) is True  # offline CPUs do not count


def test_not_a_jetson(desktop: Path) -> None:
    assert device.jetson_info(desktop) is None
    with pytest.raises(NotJetsonError) as err:
        device.require_jetson(desktop)
    assert str(err.value) == (
        "not a Jetson: no /etc/nv_tegra_release and no tegra entry in /proc/device-tree/compatible "
        f"under {desktop}; nvpmodel modes and jetson_clocks are Jetson-only"
    )
    assert err.value.exit_code == 8
    assert device.clocks_pinned(desktop) is None


def test_device_tree_alone_identifies_a_jetson(tmp_path: Path) -> None:
    root = build_sysroot(tmp_path / "r", "orin-nx-16gb").root
    (root / "etc/nv_tegra_release").unlink()
    info = device.require_jetson(root)
    assert info.release is None
    assert info.model == "NVIDIA Jetson Orin NX Engineering Reference Developer Kit"


@pytest.mark.parametrize(("module", "super_flash"), FLASHES)
def test_every_fixture_matches_its_profile(module: str, super_flash: bool, make_jetson) -> None:
    """The profile cross-check passes for each module's real mode list, and fails when one mode differs."""
    from edge.power.report import profile_check

    jetson = make_jetson(module, super_flash=super_flash)
    conf = device.read_conf(jetson.root)
    assert conf is not None
    check = profile_check(conf, jetson.root)
    assert (check["match"], check["differences"], check["super_flash"]) == (True, [], super_flash)
    renamed = ModeList(tuple(Mode(m.id, m.name + "_X" if m.id == 1 else m.name) for m in conf.modes), conf.default_id)
    check = profile_check(renamed, jetson.root)
    assert check["match"] is False
    assert check["differences"] == [
        f"device has {jetson.modes[1]}_X (id 1), profile does not",
        f"profile expects {jetson.modes[1]} (id 1), device does not have it",
    ]


@pytest.mark.parametrize(("jetpack", "node", "of_name"), [(6, "17000000.gpu", "gpu"), (5, "17000000.ga10b", "ga10b")])
def test_gpu_devfreq_node_of_either_jetpack(jetpack: int, node: str, of_name: str, make_jetson) -> None:
    jetson = make_jetson("orin-nx-16gb", jetpack=jetpack)
    found = device.gpu_devfreq(jetson.root)
    assert found is not None and found.name == node
    assert (found / "device/of_node/name").read_text().strip("\x00") == of_name
    assert device.clocks_pinned(jetson.root) is False
    conf = (jetson.root / "etc/nvpmodel.conf").read_text()
    expected = (
        "/sys/devices/platform/17000000.gpu/devfreq_dev"
        if jetpack == 6
        else "/sys/devices/gpu.0/devfreq/17000000.ga10b"
    )
    assert f"MAX_FREQ {expected}/max_freq" in conf


def test_tpc_masks_from_the_conf(make_jetson) -> None:
    jetson = make_jetson("orin-nano-8gb", super_flash=True, tpc_masks={0: 0, 1: 0, 2: 0, 3: 1})
    conf = device.read_conf(jetson.root)
    assert conf is not None and dict(conf.tpc_masks) == {0: "0", 1: "0", 2: "0", 3: "1"}
    m = {mode.name: mode for mode in conf.modes}
    assert conf.needs_reboot(m["25W"], m["7W"]) and conf.needs_reboot(m["7W"], m["15W"])
    assert not conf.needs_reboot(m["25W"], m["MAXN_SUPER"])
    assert [x.name for x in conf.live_from(m["7W"])] == ["7W"]
    plain = device.read_conf(make_jetson("orin-nx-8gb").root)  # no TPC_PG_MASK lines: all switch live
    assert plain is not None and plain.tpc_masks == () and len(plain.live_from(plain.modes[0])) == 4


@pytest.mark.parametrize(
    ("l4t", "jetpack", "cuda", "tensorrt"),
    [("36.2.0", "6.0 DP", "12.2", "8.6.2"), ("36.3.0", "6.0", "12.2", "8.6.2"), ("36.4.3", "6.2", "12.6", "10.3")],
)
def test_l4t_36_2_has_a_jetpack_row(l4t: str, jetpack: str, cuda: str, tensorrt: str) -> None:
    from platforms.jetson import jetpack_for  # NVIDIA's JetPack 6.0 Developer Preview shipped L4T 36.2

    row = jetpack_for(l4t)
    assert row is not None and (row.jetpack, row.cuda, row.tensorrt) == (jetpack, cuda, tensorrt)
