"""scripts/make_stubs.py and the classic TensorRT module type-checked against the classic API stubs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from make_stubs import fix_stub  # noqa: E402


@pytest.mark.parametrize(
    ("line", "fixed"),
    [
        (
            "    def configure_plugin(self: IPluginV3, in: list[D], out: list[D]) -> None:\n",
            "    def configure_plugin(self: IPluginV3, in_: list[D], out: list[D]) -> None:\n",
        ),
        (
            "    def get_workspace_size(self, in: list[P], out: list[P]) -> int:\n",
            "    def get_workspace_size(self, in_: list[P], out: list[P]) -> int:\n",
        ),
        (
            "    def add_scale_nd(self, input: ITensor, shift: Weights = None, channel_axis: int) -> IScaleLayer:\n",
            "    def add_scale_nd(self, input: ITensor, shift: Weights = None, channel_axis: int = ...) -> IScaleLayer:\n",
        ),
        ("    x: int = 1  # in: the docs\n", "    x: int = 1  # in: the docs\n"),
        ("import tensorrt_libs as tensorrt_libs\n", ""),
    ],
)
def test_fix_stub_makes_lines_valid(line: str, fixed: str) -> None:
    assert fix_stub(line) == "# mypy: ignore-errors\n" + fixed


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stubs")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_stubs.py"), str(out)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return out


def _mypy(stubs: Path, *paths: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(stubs)}
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", *paths]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, check=False)


def test_make_stubs_writes_classic_and_rtx_packages(stubs: Path) -> None:
    for rel in (
        "tensorrt/__init__.pyi",
        "tensorrt_bindings/tensorrt.pyi",
        "tensorrt_rtx/__init__.pyi",
        "tensorrt_rtx_bindings/tensorrt_rtx.pyi",
    ):
        assert (stubs / rel).is_file(), rel
    text = (stubs / "tensorrt_bindings" / "tensorrt.pyi").read_text()
    assert not re.search(r"[(,]\s*in:", text) and ", in_: list" in text


def test_engine_trt_passes_mypy_against_the_classic_stubs(stubs: Path) -> None:
    result = _mypy(stubs, "builders/engine_trt.py", "builders/engine_rtx.py", "builders/engine_common.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stubs_really_type_check_classic_calls(stubs: Path, tmp_path: Path) -> None:
    # The check above would pass trivially if `tensorrt` resolved to Any: a wrong classic call must fail.
    bad = tmp_path / "bad_classic.py"
    bad.write_text(
        "import tensorrt as trt\n\n\n"
        "def f(config: trt.IBuilderConfig) -> None:\n"
        '    config.DLA_core = "zero"\n'
        "    config.set_flag(trt.BuilderFlag.NO_SUCH_FLAG)\n"
    )
    result = _mypy(stubs, str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert 'Incompatible types in assignment (expression has type "str", variable has type "int")' in result.stdout
    assert '"type[BuilderFlag]" has no attribute "NO_SUCH_FLAG"' in result.stdout
