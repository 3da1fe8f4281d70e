"""Fixtures for platform detection: machine file trees and an ``nvidia-smi`` stand-in.

The sysroots hold files in the exact format the real machines have (``/etc/nv_tegra_release``,
NUL-separated ``/proc/device-tree/compatible``, ``/proc/meminfo``, CUDA's ``version.json``): ``/etc``
and ``/proc`` are the hardware boundary, the only place the project allows test doubles.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

SysrootFactory = Callable[..., Path]

R36_4_3 = (
    "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
    "DATE: Wed Jan  8 01:49:37 UTC 2025\n"
    "# KERNEL_VARIANT: oot\n"
    "TARGET_USERSPACE_LIB_DIR=nvidia\n"
    "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n"
)
R35_4_1 = (
    "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
    "DATE: Tue Aug  1 19:57:35 UTC 2023\n"
)
R38_2_0 = (
    "# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, "
    "DATE: Fri Aug 22 00:55:42 UTC 2025\n"
)
R32_7_4 = (
    "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, "
    "DATE: Fri Jun  9 04:25:08 UTC 2023\n"
)


@pytest.fixture
def make_sysroot(tmp_path: Path) -> SysrootFactory:
    """``make_sysroot(release=..., compatible=[...], model=..., mem_kb=..., cuda=...)`` -> a sysroot folder."""
    counter = iter(range(1000))

    def make(
        *,
        release: str | None = None,
        compatible: Sequence[str] | None = None,
        model: str | None = None,
        mem_kb: int | None = None,
        cuda: str | None = None,
    ) -> Path:
        root = tmp_path / f"sysroot{next(counter)}"
        (root / "etc").mkdir(parents=True)
        (root / "proc").mkdir()
        if release is not None:
            (root / "etc/nv_tegra_release").write_text(release)
        dt = root / "proc/device-tree"
        if compatible is not None:
            dt.mkdir(parents=True)
            # Real device-tree string lists: each string NUL-terminated.
            (dt / "compatible").write_bytes(b"".join(c.encode() + b"\0" for c in compatible))
        if model is not None:
            dt.mkdir(parents=True, exist_ok=True)
            (dt / "model").write_bytes(model.encode() + b"\0")
        if mem_kb is not None:
            (root / "proc/meminfo").write_text(
                f"MemTotal:       {mem_kb} kB\nMemFree:         1234567 kB\nMemAvailable:    2345678 kB\n"
            )
        if cuda is not None:
            (root / "usr/local/cuda").mkdir(parents=True)
            (root / "usr/local/cuda/version.json").write_text(
                json.dumps({"cuda": {"name": "CUDA SDK", "version": cuda}, "cuda_cudart": {"version": cuda}})
            )
        return root

    return make


def smi_uuid(index: int) -> str:
    """The UUID the nvidia-smi stand-in gives GPU ``index``."""
    return f"GPU-{index}0000000-1111-2222-3333-444444444444"


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Put an ``nvidia-smi`` stand-in first on PATH (hardware-boundary double: there is no GPU here).

    It answers only the exact query the kit makes (anything else exits 2, so a wrong query fails the
    test), printing ``rows`` (``name, compute_cap, driver_version``) as nvidia-smi prints them, with
    ``index, uuid,`` in front (UUIDs ``GPU-<index>0000000-...``), or failing with ``exit_code`` and
    ``message``. It does not model MIG devices or GPUs the driver cannot reach.
    """

    def install(rows: Sequence[str] = (), exit_code: int = 0, message: str = "") -> Path:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        script = bindir / "nvidia-smi"
        expected = ["--query-gpu=index,uuid,name,compute_cap,driver_version", "--format=csv,noheader"]
        rows = [f"{i}, {smi_uuid(i)}, {row}" for i, row in enumerate(rows)]
        script.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"if sys.argv[1:] != {expected!r}:\n"
            "    print('unexpected arguments: ' + ' '.join(sys.argv[1:]), file=sys.stderr)\n"
            "    sys.exit(2)\n"
            f"for row in {list(rows)!r}:\n"
            "    print(row)\n"
            f"if {message!r}:\n"
            f"    print({message!r})\n"
            f"sys.exit({exit_code})\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
        return script

    return install
