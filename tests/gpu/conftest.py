"""GPU tests run only where a CUDA device answers; everywhere else they skip with the reason.

``gpu_bundle``: a real bundle built here by ``edge build`` from the committed YOLOv8n export with a dynamic
batch/size profile, for the cpu target and this machine's own target (``auto``: a TensorRT-RTX plan on RTX
cards, a classic plan where TensorRT is installed; skipped targets are listed in its manifest).
(scripts/gpu_check.sh hands over the one it built as ``$GPU_CHECK_BUNDLE``.)
``record_timing(name, ms)`` adds a figure to ``$GPU_CHECK_TIMINGS`` (JSON), which scripts/gpu_check.sh
puts into its report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.backends.cuda import cuda_available

CUDA_OK, CUDA_REASON = cuda_available()
requires_gpu = pytest.mark.skipif(not CUDA_OK, reason=f"needs an NVIDIA GPU: {CUDA_REASON}")
MODELS = Path(__file__).resolve().parents[1] / "data" / "models"
YOLO_DYN = MODELS / "yolov8n-detect-dyn.onnx"
YOLO_CLS = MODELS / "yolov8n-cls.onnx"
PROFILE = (
    "--min-shapes",
    "images:1x3x128x128",
    "--opt-shapes",
    "images:1x3x256x256",
    "--max-shapes",
    "images:4x3x320x320",
)


def build_bundle(out: Path, model: Path, *flags: str) -> Path:
    """``edge build MODEL -o OUT --target auto --target cpu --skip-unavailable ...`` (the real builder)."""
    from edge.backends import cuda
    from edge.cli import main

    precision = "fp16" if cuda.device_info(0).compute_capability == "7.5" else "fp32"  # Turing: no FP32 GEMM in RTX
    argv = ["build", str(model), "-o", str(out), "--target", "auto", "--target", "cpu", "--skip-unavailable"]
    assert main([*argv, "--precision", precision, *flags]) == 0
    return out


@pytest.fixture(scope="session")
def gpu_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not CUDA_OK:
        pytest.skip(f"needs an NVIDIA GPU: {CUDA_REASON}")
    made = os.environ.get("GPU_CHECK_BUNDLE")  # scripts/gpu_check.sh built this very bundle already
    if made and (Path(made) / "manifest.json").is_file():
        return Path(made)
    return build_bundle(
        tmp_path_factory.mktemp("gpu") / "yolo.bundle", YOLO_DYN, *PROFILE, "--task", "detect", "--decoder", "yolov8"
    )


@pytest.fixture
def record_timing() -> Callable[[str, float], None]:
    def record(name: str, ms: float) -> None:
        path = os.environ.get("GPU_CHECK_TIMINGS")
        if not path:
            return
        p = Path(path)
        data = json.loads(p.read_text()) if p.is_file() else {}
        data[name] = round(float(ms), 3)
        p.write_text(json.dumps(data, indent=2))

    return record
