"""A cv2 that fails to import is one `error:` line, not a traceback (issue 10, item 12).

The stand-in ``cv2`` package models JetPack 6's OpenCV (built against numpy 1.x) under numpy 2: its
``__init__`` raises the ImportError the real one raises ("numpy.core.multiarray failed to import"), which
is not a ModuleNotFoundError. It models nothing else of OpenCV. The command runs in a subprocess with the
stand-in first on PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from platforms.versions import import_problem, package_version

ROOT = Path(__file__).resolve().parents[2]
NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


def _broken_cv2(where: Path) -> Path:
    pkg = where / "cv2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('raise ImportError("numpy.core.multiarray failed to import")\n')
    return where


def test_infer_with_a_broken_cv2_is_one_line(tmp_path: Path) -> None:
    from tests.runtime.bundles import write_bundle

    bundle = write_bundle(tmp_path / "b.bundle")
    image = tmp_path / "x.jpg"
    image.write_bytes(b"not read: cv2 fails first")
    env = {**os.environ, "PYTHONPATH": f"{_broken_cv2(tmp_path / 'site')}{os.pathsep}{ROOT}"}
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "infer", str(bundle), str(image)],
        capture_output=True, text=True, timeout=120, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: OpenCV (cv2) failed to import (numpy.core.multiarray failed to import)")
    if NUMPY_2:
        assert f"numpy {package_version('numpy')} is installed" in lines[0] and "pip install 'numpy<2'" in lines[0]


def test_import_problem_leaves_other_modules_alone() -> None:
    assert import_problem(ModuleNotFoundError("No module named 'onnx'", name="onnx")) is None
    missing = import_problem(ModuleNotFoundError("No module named 'cv2'", name="cv2"))
    assert missing is not None and missing.startswith("OpenCV (cv2) is not installed")


@pytest.mark.parametrize("exc_type", [ImportError, ModuleNotFoundError])
def test_import_problem_inside_cv2(
    tmp_path: Path, exc_type: type[ImportError], monkeypatch: pytest.MonkeyPatch
) -> None:
    site = _broken_cv2(tmp_path)
    (site / "cv2" / "__init__.py").write_text(f'raise {exc_type.__name__}("_ARRAY_API not found")\n')
    for name in [m for m in sys.modules if m == "cv2" or m.startswith("cv2.")]:
        monkeypatch.delitem(sys.modules, name)  # the real OpenCV, restored after the test
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ImportError) as info:
        import cv2  # noqa: F401
    monkeypatch.delitem(sys.modules, "cv2", raising=False)
    line = import_problem(info.value)
    assert line is not None and line.startswith("OpenCV (cv2) failed to import (_ARRAY_API not found)")
