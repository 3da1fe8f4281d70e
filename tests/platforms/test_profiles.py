"""Every target profile loads, matches docs/platforms.md, and bad profiles fail with a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import platforms
from edge.errors import ConfigError
from platforms.profile import SOURCED_FACTS, PowerMode, load_profile, parse_profile
from platforms.registry import PROFILES_DIR

# docs/platforms.md, transcribed by hand: id -> (CC, DLA cores, memory GB, standard modes, Super modes, default).
JETSONS: dict[str, tuple[str, int, float, dict[int, str], dict[int, str], str | None]] = {
    "jetson-agx-orin-64gb": ("8.7", 2, 64, {0: "MAXN", 1: "MODE_15W", 2: "MODE_30W", 3: "MODE_50W"}, {}, "MODE_30W"),
    "jetson-agx-orin-32gb": ("8.7", 2, 32, {0: "MAXN", 1: "MODE_15W", 2: "MODE_30W", 3: "MODE_40W"}, {}, "MAXN"),
    "jetson-agx-orin-industrial": ("8.7", 2, 64, {}, {}, None),
    "jetson-orin-nx-16gb": (
        "8.7", 2, 16, {0: "MAXN", 1: "10W", 2: "15W", 3: "25W"},
        {0: "MAXN_SUPER", 1: "10W", 2: "15W", 3: "25W", 4: "40W"}, "15W",
    ),
    "jetson-orin-nx-8gb": (
        "8.7", 1, 8, {0: "MAXN", 1: "10W", 2: "15W", 3: "20W"},
        {0: "MAXN_SUPER", 1: "10W", 2: "15W", 3: "20W", 4: "40W"}, "15W",
    ),
    # Super flash: 0-2 plus 3=7W that Orin Nano Super devkits report (docs/platforms.md Jetson power modes).
    "jetson-orin-nano-8gb": ("8.7", 0, 8, {0: "15W", 1: "7W"}, {0: "15W", 1: "25W", 2: "MAXN_SUPER", 3: "7W"}, "15W"),
    "jetson-orin-nano-4gb": (
        "8.7", 0, 4, {0: "10W", 1: "7W_AI", 2: "7W_CPU"}, {0: "10W", 1: "25W", 2: "MAXN_SUPER"}, "10W",
    ),
}  # fmt: skip

# docs/platforms.md "RTX and other desktop GPUs": id -> (CC, flavour, precisions beyond fp32).
GPUS: dict[str, tuple[str | None, str | None, set[str]]] = {
    "rtx-turing": ("7.5", "tensorrt-rtx", {"fp16", "int8"}),
    "rtx-ampere": ("8.6", "tensorrt-rtx", {"fp16", "bf16", "int8"}),
    "rtx-ada": ("8.9", "tensorrt-rtx", {"fp16", "bf16", "int8", "fp8"}),
    "rtx-blackwell": ("12.0", "tensorrt-rtx", {"fp16", "bf16", "int8", "fp8", "fp4"}),
    "a100": ("8.0", "tensorrt", {"fp16", "bf16", "tf32", "int8"}),
    "hopper": ("9.0", "tensorrt", {"fp16", "bf16", "tf32", "int8", "fp8"}),
    "cpu": (None, None, {"fp16", "int8"}),
}


def test_every_profile_file_is_a_target() -> None:
    files = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
    assert sorted(platforms.target_ids()) == files
    assert set(files) == set(JETSONS) | set(GPUS)


@pytest.mark.parametrize("target_id", sorted(JETSONS))
def test_jetson_profiles_match_platforms_md(target_id: str) -> None:
    cc, dla, memory, modes, super_modes, default = JETSONS[target_id]
    p = platforms.get_target(target_id)
    assert (p.family, p.compute_capability, p.trt_flavour) == ("jetson", cc, "tensorrt")
    assert (p.dla_cores, p.memory_gb) == (dla, memory)
    assert p.precisions == ("fp32", "fp16", "int8")  # Orin sm_87: FP16 + INT8 tensor cores, no FP8
    assert {m.id: m.name for m in p.power_modes} == modes
    assert {m.id: m.name for m in p.power_modes_super} == super_modes
    assert p.default_power_mode == default
    assert p.compatible and all(c.startswith("nvidia,p3") for c in p.compatible)
    if default is None:
        assert "default_power_mode" in p.unverified


@pytest.mark.parametrize("target_id", sorted(GPUS))
def test_gpu_profiles_match_platforms_md(target_id: str) -> None:
    cc, flavour, extra = GPUS[target_id]
    p = platforms.get_target(target_id)
    assert (p.compute_capability, p.trt_flavour) == (cc, flavour)
    assert set(p.precisions) == {"fp32"} | extra
    assert (p.dla_cores, p.power_modes, p.power_modes_super, p.compatible) == (0, (), (), ())


@pytest.mark.parametrize("target", platforms.all_targets(), ids=lambda p: p.id)
def test_profile_sources_and_unverified_are_complete(target: platforms.Platform) -> None:
    assert set(SOURCED_FACTS) <= set(target.sources)
    for fact in target.unverified:
        assert "UNVERIFIED" in target.sources[fact], f"{target.id}: {fact} is unverified but its source does not say so"
    for fact, source in target.sources.items():
        if "UNVERIFIED" in source:
            assert fact in target.unverified, f"{target.id}: {fact} is marked UNVERIFIED but not listed"
    assert target.default_workspace_mib > 0 or target.trt_flavour is None


def test_platforms_md_unverified_facts_are_listed() -> None:
    # docs/platforms.md marks these UNVERIFIED: AGX Orin 64GB's default mode and AGX Orin Industrial's modes.
    assert "default_power_mode" in platforms.get_target("jetson-agx-orin-64gb").unverified
    assert "power_modes" in platforms.get_target("jetson-agx-orin-industrial").unverified


def test_tensorrt_rtx_is_never_the_flavour_of_jetson_or_hopper() -> None:
    for p in platforms.all_targets():
        if p.compute_capability in ("8.7", "9.0"):
            assert p.trt_flavour == "tensorrt", p.id


def test_power_mode_lookup_by_name() -> None:
    nano = platforms.get_target("jetson-orin-nano-8gb")
    assert nano.power_mode("maxn_super", super_flash=True) == PowerMode(2, "MAXN_SUPER")
    assert nano.power_mode("MAXN_SUPER") is None  # not in the standard flash
    assert nano.default_mode(super_flash=True) == "25W"
    assert nano.default_mode() == "15W"
    assert nano.modes(super_flash=True) == nano.power_modes_super
    assert str(PowerMode(2, "MAXN_SUPER")) == "2=MAXN_SUPER"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("rtx-ada", None),
        (" RTX-Ada ", None),
        ("auto", "use resolve_target"),
        ("generic", "valid targets: jetson-agx-orin-64gb"),
        ("orin", "unknown target 'orin'"),
        ("", "unknown target ''"),
        (None, "expected a target id string, got None"),
    ],
)
def test_get_target(name: Any, error: str | None) -> None:
    if error is None:
        assert platforms.get_target(name).id == "rtx-ada"
        return
    with pytest.raises(ConfigError, match=error) as info:
        platforms.get_target(name)
    for target_id in platforms.target_ids():
        assert target_id in str(info.value)


def test_resolve_target_by_id_and_auto(make_sysroot: Any) -> None:
    assert platforms.resolve_target("jetson-orin-nx-8gb").id == "jetson-orin-nx-8gb"
    empty = make_sysroot()
    assert platforms.resolve_target("auto", sysroot=str(empty), nvidia_smi=None).id == "cpu"
    thor = make_sysroot(release="# R38 (release), REVISION: 2.0\n", compatible=["nvidia,p3834-0008", "nvidia,tegra264"])
    with pytest.raises(ConfigError, match=r"could not be identified \(Jetson Thor .*pass --target with one of: jetson"):
        platforms.resolve_target("auto", sysroot=str(thor), nvidia_smi=None)


def _good() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((PROFILES_DIR / "jetson-orin-nano-8gb.yaml").read_text())
    return data


def _with(**changes: Any) -> dict[str, Any]:
    data = _good()
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    return data


def _sources_without(fact: str) -> dict[str, str]:
    sources = dict(_good()["sources"])
    del sources[fact]
    return sources


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (_good(), None),
        (_with(tdp_w=25), r"unknown key\(s\) tdp_w"),
        (_with(family=KeyError), "family: required key is missing"),
        (_with(family="phone"), "family: 'phone' is not one of jetson"),
        (_with(compute_capability=8.7), "compute_capability: expected str"),
        (_with(compute_capability="sm87"), 'expected a string such as "8.7"'),
        (_with(trt_flavour="tensorrt-llm"), "trt_flavour: 'tensorrt-llm' is not one of"),
        (_with(precisions=["fp32", "int4"]), r"precisions: \['int4'\] not valid"),
        (_with(precisions=["fp16"]), "every target runs fp32"),
        (_with(dla_cores=-1), "dla_cores: must be >= 0"),
        (_with(dla_cores=True), "dla_cores: expected int"),
        (_with(power_modes={"zero": "15W"}), "mode ids must be integers"),
        (_with(power_modes={0: "15W", 1: "15W"}), "mode names repeat"),
        (_with(default_power_mode="MAXN"), r"default_power_mode: 'MAXN' is not one of the modes \['15W', '7W'\]"),
        (_with(default_power_mode_super="7W_AI"), "default_power_mode_super: .7W_AI. is not one of the modes"),
        (_with(compatible=[]), "needs the device-tree compatible ids"),
        (_with(sources=_sources_without("dla_cores")), "no source given for dla_cores"),
        (_with(sources={**_good()["sources"], "tdp": "x"}), "'tdp' is not a profile fact"),
        (_with(unverified=["tdp"]), "unverified: 'tdp' is not a profile fact"),
        (_with(unverified=["gpus"]), "'gpus' is listed, but sources.gpus does not say 'UNVERIFIED: why'"),
        (_with(unverified=["dla_cores"]), "'dla_cores' is listed, but sources.dla_cores does not say"),
        (_with(sources={**_good()["sources"], "gpus": "UNVERIFIED: a guess"}), "sources.gpus says UNVERIFIED"),
        ([1, 2], "expected a mapping of profile keys"),
    ],
)
def test_parse_profile_validation(data: Any, error: str | None) -> None:
    if error is None:
        assert parse_profile(data, "x.yaml").id == "jetson-orin-nano-8gb"
        return
    with pytest.raises(ConfigError, match=error) as info:
        parse_profile(data, "x.yaml")
    assert str(info.value).startswith("x.yaml: ")


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("jetson-orin-nano-8gb.yaml", None, None),
        ("nano.yaml", None, "id 'jetson-orin-nano-8gb' does not match the file name"),
        ("broken.yaml", "id: [unclosed\n", "cannot read the platform profile"),
    ],
)
def test_load_profile_file(tmp_path: Path, name: str, text: str | None, error: str | None) -> None:
    path = tmp_path / name
    path.write_text(text if text is not None else (PROFILES_DIR / "jetson-orin-nano-8gb.yaml").read_text())
    if error is None:
        assert load_profile(path) == platforms.get_target("jetson-orin-nano-8gb")
        return
    with pytest.raises(ConfigError, match=error):
        load_profile(path)


def test_to_dict_round_trips_the_facts() -> None:
    d = platforms.get_target("jetson-orin-nx-16gb").to_dict()
    assert d["power_modes_super"] == {0: "MAXN_SUPER", 1: "10W", 2: "15W", 3: "25W", 4: "40W"}
    assert d["compute_capability"] == "8.7" and d["dla_cores"] == 2
    assert d["unverified"] == ["default_power_mode_super"]
