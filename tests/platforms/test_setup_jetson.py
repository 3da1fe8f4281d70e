"""What set-up does on a Jetson (issue 10, items 2, 3 and 12), checked without installing anything.

- setup.py's requirements are read from the file (``ast``) and evaluated with ``packaging`` (pip's own
  marker and specifier logic) for an x86-64 desktop and an aarch64 Jetson;
- ``scripts/setup.sh --plan`` over a sysroot with a real-format ``/etc/nv_tegra_release`` prints the venv
  flags, extras and stub decision; ``--check-tensorrt`` runs against a stand-in ``tensorrt`` package that
  models JetPack's python3-libnvinfer (a module with ``__version__`` and ``Runtime``, nothing more).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.platforms.conftest import R35_4_1, R36_4_3, R38_2_0

ROOT = Path(__file__).resolve().parents[2]
X86 = {"platform_machine": "x86_64", "sys_platform": "linux"}
JETSON = {"platform_machine": "aarch64", "sys_platform": "linux"}


def _setup_requirements() -> tuple[list[Requirement], dict[str, list[Requirement]]]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    names = {
        t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)
    }
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: k.value for k in call.keywords}

    def strings(node: ast.expr) -> list[str]:
        if isinstance(node, ast.Name):
            return strings(names[node.id])  # type: ignore[arg-type]
        if isinstance(node, ast.Starred):
            return strings(node.value)
        if isinstance(node, ast.List):
            return [s for e in node.elts for s in strings(e)]
        return [ast.literal_eval(node)]

    install = [Requirement(r) for r in strings(kw["install_requires"])]
    extras_node = kw["extras_require"]
    assert isinstance(extras_node, ast.Dict)
    extras = {
        ast.literal_eval(k): [Requirement(r) for r in strings(v)] for k, v in zip(extras_node.keys, extras_node.values)
    }  # type: ignore[arg-type]
    return install, extras


def _applies(reqs: list[Requirement], name: str, env: dict[str, str]) -> list[Requirement]:
    return [r for r in reqs if r.name == name and (r.marker is None or r.marker.evaluate({**env, "extra": ""}))]


@pytest.mark.parametrize(("env", "numpy_2"), [(X86, True), (JETSON, False)], ids=["x86-64", "jetson"])
def test_numpy_stays_1x_on_aarch64_for_jetpacks_opencv(env: dict[str, str], numpy_2: bool) -> None:
    install, _ = _setup_requirements()
    (numpy,) = _applies(install, "numpy", env)
    assert numpy.specifier.contains("1.26.4") and not numpy.specifier.contains("1.21.5")
    assert numpy.specifier.contains("2.1.0") is numpy_2
    assert not _applies(install, "opencv-python-headless", JETSON)  # JetPack's own OpenCV, not pip's


@pytest.mark.parametrize(
    ("extra", "accepts", "refuses"),
    [
        ("jetson", ["12.6.1", "12.9.0"], ["12.6.0", "12.0.0", "13.0.0"]),
        ("jetson-cuda13", ["13.0.0", "13.4.4"], ["12.9.0", "14.0"]),
    ],
)
def test_cuda_python_matches_the_jetpack_driver(extra: str, accepts: list[str], refuses: list[str]) -> None:
    _, extras = _setup_requirements()
    (cuda,) = _applies(extras[extra], "cuda-python", JETSON)
    assert all(cuda.specifier.contains(v) for v in accepts)
    assert not any(cuda.specifier.contains(v) for v in refuses)


def _plan(tmp_path: Path, release: str | None) -> dict[str, str]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    if release is not None:
        (root / "etc/nv_tegra_release").write_text(release)
    env = {**os.environ, "EDGE_SYSROOT": str(root), "EDGE_EXTRAS": "build,dev"}
    proc = subprocess.run(
        [str(ROOT / "scripts/setup.sh"), "--plan"], capture_output=True, text=True, env=env, check=True
    )
    return dict(line.split(": ", 1) for line in proc.stdout.splitlines())


@pytest.mark.parametrize(
    ("release", "venv", "extras", "stubs"),
    [
        (None, "python3 -m venv .venv", "build,dev", "installed"),
        (R36_4_3, "python3 -m venv --system-site-packages .venv", "build,dev,jetson", "not installed"),
        (R38_2_0, "python3 -m venv --system-site-packages .venv", "build,dev,jetson-cuda13", "not installed"),
        (R35_4_1, "python3 -m venv --system-site-packages .venv", "build,dev", "not installed"),
    ],
    ids=["desktop", "jetpack6", "jetpack7", "jetpack5"],
)
def test_setup_plan_on_a_jetson(tmp_path: Path, release: str | None, venv: str, extras: str, stubs: str) -> None:
    plan = _plan(tmp_path, release)
    assert plan["venv"] == venv and plan["extras"] == extras
    assert plan["tensorrt-stubs"].startswith(stubs)
    if release == R36_4_3:
        assert plan["jetson"] == "L4T 36.4.3, JetPack 6 (CUDA 12.6, cuda-python 12.x)"


def test_setup_says_which_tensorrt_it_sees(tmp_path: Path) -> None:
    check = [str(ROOT / "scripts/setup.sh"), "--check-tensorrt", sys.executable]
    site = tmp_path / "dist-packages" / "tensorrt"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text('__version__ = "10.3.0"\nclass Runtime: pass\n')
    seen = subprocess.run(
        check, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(site.parent)}
    )
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.strip() == f"setup: TensorRT 10.3.0 from {site}"
    (site / "__init__.py").write_text("")  # a folder like the one tensorrt-stubs leaves: no runtime
    stubs = subprocess.run(
        check, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(site.parent)}
    )
    assert stubs.returncode == 1
    assert stubs.stderr.startswith(
        f"setup: WARNING: {sys.executable} sees no TensorRT (AssertionError: only type stubs"
    )
    assert "falls back to ONNX Runtime" in stubs.stderr


def test_doctor_says_loudly_when_a_jetson_runs_without_tensorrt(make_sysroot: object) -> None:
    import platforms
    from edge.cli.doctor import format_text

    jetson = make_sysroot(release=R36_4_3, compatible=["nvidia,p3768-0000+p3767-0005", "nvidia,tegra234"])  # type: ignore[operator]
    machine = platforms.detect(jetson)
    if machine.tensorrt_version is not None:
        pytest.skip("a real TensorRT is importable here")
    warning = platforms.tensorrt_warning(machine, "/opt/venv/bin/python")
    assert warning == (
        "WARNING: this Jetson (L4T 36.4.3) runs without TensorRT: /opt/venv/bin/python cannot import tensorrt, so "
        "every bundle falls back to ONNX Runtime; install JetPack's python3-libnvinfer and use a venv made with "
        "--system-site-packages without tensorrt-stubs (scripts/setup.sh does both)"
    )
    desktop = platforms.detect(make_sysroot(), nvidia_smi=None)  # type: ignore[operator]
    assert platforms.tensorrt_warning(desktop) is None
    report = {"target": "x", "reason": "r", "facts": "f", "versions": {}, "cuda": False, "cuda_reason": "none"}
    assert format_text({**report, "warnings": [warning]}, None).splitlines()[0] == warning
