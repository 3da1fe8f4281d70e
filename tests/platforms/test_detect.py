"""detect() over sysroots with real-format files, and over an nvidia-smi stand-in on PATH.

The sysroot files and the ``nvidia-smi`` script are hardware-boundary doubles (see conftest.py):
this machine has no Jetson and no GPU. NVML is off for a sysroot other than ``/``, so the tests do
not depend on the machine they run on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import platforms
from edge.errors import ConfigError
from platforms.gpu import parse_smi_csv
from platforms.jetson import jetpack_for, parse_tegra_release
from platforms.versions import cuda_toolkit_version, package_version

from .conftest import R32_7_4, R35_4_1, R36_4_3, R38_2_0

AGX_DEVKIT = ["nvidia,p3737-0000+p3701-0000", "nvidia,p3737-0000", "nvidia,p3701-0000", "nvidia,tegra234"]
NANO_DEVKIT_SUPER = ["nvidia,p3768-0000+p3767-0005-super", "nvidia,p3767-0005", "nvidia,tegra234"]
NX_16GB = ["nvidia,p3768-0000+p3767-0000", "nvidia,p3767-0000", "nvidia,tegra234"]
THOR = ["nvidia,p3971-0000+p3834-0008", "nvidia,p3834-0008", "nvidia,tegra264"]

# name, sysroot files, expected platform id, super flash, L4T, JetPack, CUDA, words the reason must hold
JETSON_CASES: list[tuple[str, dict[str, Any], str, bool, str | None, str | None, str | None, list[str]]] = [
    (
        "agx-orin-devkit",
        {"release": R36_4_3, "compatible": AGX_DEVKIT, "model": "NVIDIA Jetson AGX Orin Developer Kit",
         "mem_kb": 64335836, "cuda": "12.6.68"},
        "jetson-agx-orin-64gb", False, "36.4.3", "6.2", "12.6.68",
        ["module p3701-0000", "AGX Orin Developer Kit", "MemTotal 61.4 GiB", "L4T 36.4.3 (JetPack 6.2)"],
    ),
    (
        "agx-orin-devkit-32gb-module",
        {"release": R36_4_3, "compatible": AGX_DEVKIT, "mem_kb": 30536664},
        "jetson-agx-orin-32gb", False, "36.4.3", "6.2", "12.6",
        ["MemTotal 29.1 GiB: the 32 GB devkit module", "CUDA 12.6 from the JetPack table"],
    ),
    (
        "orin-nano-devkit-super",
        {"release": R36_4_3, "compatible": NANO_DEVKIT_SUPER,
         "model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "cuda": "12.6.68"},
        "jetson-orin-nano-8gb", True, "36.4.3", "6.2", "12.6.68",
        ["module p3767-0005-super (Super flash)"],
    ),
    (
        "orin-nx-16gb-jetpack5",
        {"release": R35_4_1, "compatible": NX_16GB, "model": "NVIDIA Orin NX Developer Kit"},
        "jetson-orin-nx-16gb", False, "35.4.1", "5.1.2", "11.4",
        ["module p3767-0000", "L4T 35.4.1 (JetPack 5.1.2)"],
    ),
    (
        "thor",
        {"release": R38_2_0, "compatible": THOR, "model": "NVIDIA Jetson AGX Thor Developer Kit", "cuda": "13.0.48"},
        "generic", False, "38.2.0", "7.0", "13.0.48",
        ["Jetson Thor (tegra264, sm_110) is not a target", "nvidia,p3834-0008"],
    ),
    (
        "unknown-orin-module",
        {"release": R36_4_3, "compatible": ["nvidia,p9999-0042", "nvidia,tegra234"]},
        "generic", False, "36.4.3", "6.2", "12.6",
        ["an Orin SoC (tegra234)", "nvidia,p9999-0042", "in no profile"],
    ),
    (
        "unknown-compatible",
        {"release": R36_4_3, "compatible": ["acme,widget-board"]},
        "generic", False, "36.4.3", "6.2", "12.6",
        ["'acme,widget-board' names no known Jetson module"],
    ),
    (
        "two-modules",
        {"release": R36_4_3, "compatible": ["nvidia,p3767-0000", "nvidia,p3767-0001", "nvidia,tegra234"]},
        "generic", False, "36.4.3", "6.2", "12.6",
        ["matches several modules (jetson-orin-nx-16gb, jetson-orin-nx-8gb)"],
    ),
    (
        "jetson-nano-old-l4t",
        {"release": R32_7_4, "compatible": ["nvidia,p3449-0000-b00+p3448-0002-b00", "nvidia,jetson-nano", "nvidia,tegra210"]},
        "generic", False, "32.7.4", None, None,
        ["Jetson Nano/TX1 (tegra210, sm_53) is not a target", "L4T 32.7.4 is in no JetPack row"],
    ),
    (
        "release-without-device-tree",
        {"release": R36_4_3},
        "generic", False, "36.4.3", "6.2", "12.6",
        ["/proc/device-tree/compatible is missing"],
    ),
    (
        "device-tree-without-release",
        {"compatible": NX_16GB},
        "jetson-orin-nx-16gb", False, None, None, None,
        ["module p3767-0000", "no /etc/nv_tegra_release"],
    ),
    (
        "garbled-release",
        {"release": "hello\n", "compatible": NX_16GB},
        "jetson-orin-nx-16gb", False, None, None, None,
        ["without an 'R<major> (release), REVISION: x.y' line"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("files", "target", "super_flash", "l4t", "jetpack", "cuda", "reason_has"),
    [case[1:] for case in JETSON_CASES],
    ids=[case[0] for case in JETSON_CASES],
)
def test_detect_jetson(
    make_sysroot: Any,
    files: dict[str, Any],
    target: str,
    super_flash: bool,
    l4t: str | None,
    jetpack: str | None,
    cuda: str | None,
    reason_has: list[str],
) -> None:
    m = platforms.detect(make_sysroot(**files), nvidia_smi=None)
    assert m.platform.id == target, m.reason
    assert (m.super_flash, m.l4t_version, m.jetpack_version, m.cuda_version) == (super_flash, l4t, jetpack, cuda)
    for words in reason_has:
        assert words in m.reason
    assert m.is_jetson
    if target == "generic":
        assert m.platform.trt_flavour is None and m.gpu_count == 0
        with pytest.raises(ConfigError):
            platforms.get_target(m.platform.id)
    else:
        assert (m.compute_capability, m.gpu_count) == ("8.7", 1)
        assert m.model == files.get("model")


# nvidia-smi rows, exit code, message -> expected platform, GPU name, count, words the reason must hold
SMI_CASES: list[tuple[str, list[str], int, str, str, str | None, int, list[str]]] = [
    ("rtx-4090", ["NVIDIA GeForce RTX 4090, 8.9, 550.54.14"], 0, "", "rtx-ada", "NVIDIA GeForce RTX 4090", 1,
     ["GPU 0 'NVIDIA GeForce RTX 4090' (compute capability 8.9) via nvidia-smi"]),
    ("h200", ["NVIDIA H200, 9.0, 570.86.15"], 0, "", "hopper", "NVIDIA H200", 1, ["compute capability 9.0"]),
    ("turing", ["NVIDIA GeForce RTX 2080 Ti, 7.5, 535.183.01"], 0, "", "rtx-turing", "NVIDIA GeForce RTX 2080 Ti", 1, []),
    ("ampere", ["NVIDIA GeForce RTX 3060, 8.6, 535.183.01"], 0, "", "rtx-ampere", "NVIDIA GeForce RTX 3060", 1, []),
    ("blackwell", ["NVIDIA GeForce RTX 5090, 12.0, 575.51.02"], 0, "", "rtx-blackwell", "NVIDIA GeForce RTX 5090", 1, []),
    ("a100", ["NVIDIA A100-SXM4-80GB, 8.0, 550.54.15"], 0, "", "a100", "NVIDIA A100-SXM4-80GB", 1, []),
    ("two-gpus", ["NVIDIA GeForce RTX 4090, 8.9, 550.54.14", "NVIDIA GeForce RTX 3090, 8.6, 550.54.14"], 0, "",
     "rtx-ada", "NVIDIA GeForce RTX 4090", 2, ["2 GPUs, using GPU 0"]),
    ("b200-unknown-cc", ["NVIDIA B200, 10.0, 570.86.15"], 0, "", "generic", "NVIDIA B200", 1,
     ["compute capability 10.0) via nvidia-smi", "matches no target", "8.9 rtx-ada"]),
    ("cc-not-reported", ["NVIDIA GeForce RTX 4090, [N/A], 550.54.14"], 0, "", "generic", "NVIDIA GeForce RTX 4090", 1,
     ["compute capability unknown"]),
    ("driver-broken", [], 9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", "cpu",
     None, 0, ["no NVIDIA GPU found", "exit code 9: NVIDIA-SMI has failed"]),
    ("no-rows", [], 0, "", "cpu", None, 0, ["nvidia-smi: 0 GPU(s)"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "exit_code", "message", "target", "gpu_name", "count", "reason_has"),
    [case[1:] for case in SMI_CASES],
    ids=[case[0] for case in SMI_CASES],
)
def test_detect_discrete_gpu_with_nvidia_smi_stand_in(
    make_sysroot: Any,
    fake_nvidia_smi: Any,
    rows: list[str],
    exit_code: int,
    message: str,
    target: str,
    gpu_name: str | None,
    count: int,
    reason_has: list[str],
) -> None:
    fake_nvidia_smi(rows, exit_code, message)
    m = platforms.detect(make_sysroot())  # nvidia_smi="nvidia-smi" looked up on PATH: the stand-in
    assert (m.platform.id, m.gpu_name, m.gpu_count) == (target, gpu_name, count), m.reason
    for words in reason_has:
        assert words in m.reason
    assert not m.is_jetson and m.l4t_version is None
    if count:
        assert m.driver_version == rows[0].rsplit(",", 1)[1].strip()
        assert m.compute_capability == m.gpus[0].compute_capability


def test_detect_stand_in_by_path_and_cuda_from_sysroot(make_sysroot: Any, fake_nvidia_smi: Any) -> None:
    script = fake_nvidia_smi(["NVIDIA RTX 4000 Ada Generation, 8.9, 550.54.14"])
    m = platforms.detect(make_sysroot(cuda="12.4.131"), nvidia_smi=str(script))
    assert (m.platform.id, m.cuda_version) == ("rtx-ada", "12.4.131")


@pytest.mark.parametrize("nvidia_smi", [None, "nvidia-smi-not-installed-here"])
def test_detect_no_gpu_is_cpu(make_sysroot: Any, nvidia_smi: str | None) -> None:
    m = platforms.detect(make_sysroot(), nvidia_smi=nvidia_smi)
    assert (m.platform.id, m.gpu_count, m.gpu_name) == ("cpu", 0, None)
    assert m.reason.startswith("not a Jetson and no NVIDIA GPU found")
    expected = "GPU queries disabled" if nvidia_smi is None else "'nvidia-smi-not-installed-here' not found"
    assert expected in m.reason


def test_detect_missing_sysroot_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sysroot .*nowhere' is not a directory"):
        platforms.detect(tmp_path / "nowhere")


def test_detect_on_this_machine_names_a_platform_and_a_reason() -> None:
    m = platforms.detect()
    assert m.reason
    assert m.platform.id == "generic" or platforms.get_target(m.platform.id) == m.platform
    assert (m.gpu_count > 0) == (m.gpu_name is not None)


@pytest.mark.parametrize(
    ("text", "l4t"),
    [
        (R36_4_3, "36.4.3"),
        (R35_4_1, "35.4.1"),
        ("# R36 (release), REVISION: 3.0, GCID: 1\n", "36.3.0"),
        ("# R36 (release), REVISION: 4, GCID: 1\n", "36.4.0"),
        ("R36 REVISION 4.3\n", None),
        ("", None),
    ],
)
def test_parse_tegra_release(text: str, l4t: str | None) -> None:
    assert parse_tegra_release(text) == l4t


@pytest.mark.parametrize(
    ("l4t", "expected"),
    [
        ("35.2.1", ("5.1", "11.4", "8.5.2")),
        ("35.6.0", ("5.1.4", "11.4", "8.5.2")),
        ("36.3.0", ("6.0", "12.2", "8.6.2")),
        ("36.4.0", ("6.1", "12.6", "10.3")),
        ("36.4.3", ("6.2", "12.6", "10.3")),
        ("36.4.7", ("6.1/6.2.x", "12.6", "10.3")),
        ("36.5.0", ("6.1/6.2.x", "12.6", "10.3")),
        ("38.2.0", ("7.0", "13.0", "10.13")),
        ("38.4.0", ("7.1", "13.0", "10.13")),
        ("39.2.0", ("7.2", "13.2", "10.16")),
        ("32.7.4", None),
        ("36.6.0", None),
        ("x.y", None),
    ],
)
def test_jetpack_table(l4t: str, expected: tuple[str, str, str] | None) -> None:
    row = jetpack_for(l4t)
    assert (None if row is None else (row.jetpack, row.cuda, row.tensorrt)) == expected


def test_parse_smi_csv_keeps_commas_in_names() -> None:
    gpus = parse_smi_csv("NVIDIA A100 80GB PCIe, 8.0, 550.54.15\n\nOdd, Name, 8.6, [N/A]\n")
    assert [(g.name, g.compute_capability, g.driver_version) for g in gpus] == [
        ("NVIDIA A100 80GB PCIe", "8.0", "550.54.15"),
        ("Odd, Name", "8.6", None),
    ]


def test_cuda_toolkit_version_from_version_txt(tmp_path: Path) -> None:
    (tmp_path / "usr/local/cuda").mkdir(parents=True)
    assert cuda_toolkit_version(tmp_path) is None
    (tmp_path / "usr/local/cuda/version.txt").write_text("CUDA Version 10.2.300\n")
    assert cuda_toolkit_version(tmp_path) == "10.2.300"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"edgefake_stubs/__init__.pyi": "def f() -> int: ...\n"}, None),  # stubs only, like tensorrt-stubs
        ({"edgefake_plain/__init__.py": "__version__ = '1.2.3'\n"}, "1.2.3"),
        (
            {
                "edgefake_meta/__init__.py": "",
                "edgefake_meta-4.5.6.dist-info/METADATA": "Metadata-Version: 2.1\nName: edgefake-meta\nVersion: 4.5.6\n",
                "edgefake_meta-4.5.6.dist-info/RECORD": "edgefake_meta/__init__.py,,\n",
                "edgefake_meta-4.5.6.dist-info/top_level.txt": "edgefake_meta\n",
            },
            "4.5.6",
        ),
        ({}, None),
    ],
)
def test_package_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], expected: str | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = next(iter(files), "edgefake_missing/").split("/")[0].split("-")[0]
    try:
        assert package_version(module) == expected
    finally:
        for name in [m for m in sys.modules if m.startswith("edgefake")]:
            sys.modules.pop(name)
