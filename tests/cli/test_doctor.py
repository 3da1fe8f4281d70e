"""``edge doctor``: platform report, every runnable artifact vs ONNX Runtime CPU, skipped GPU artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.backends.cuda import cuda_available
from edge.cli import main
from edge.cli.doctor import compare
from tests.runtime.bundles import plan_artifact, write_bundle

HAS_GPU = cuda_available()[0]


def test_machine_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("platform: ")
    assert "versions: python " in out and "onnxruntime " in out


@pytest.mark.skipif(HAS_GPU, reason="on a GPU machine the plan may run; tests/gpu covers that")
def test_bundle_without_gpu_lists_skipped_artifacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    art, data = plan_artifact("engine-rtx-ampere.plan", ccs=("8.6",))
    bundle = write_bundle(tmp_path / "b.bundle", plans=[(art, data)])
    assert main(["doctor", str(bundle), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["bundle"]
    status = {(a["file"], a["backend"]): a["status"] for a in report["artifacts"]}
    assert status == {
        ("model.onnx", "onnxruntime-cpu"): "reference",
        ("model.onnx", "onnxruntime-cuda"): "skipped",
        ("engine-rtx-ampere.plan", "tensorrt-rtx"): "skipped",
    }
    plan = next(a for a in report["artifacts"] if a["file"] == "engine-rtx-ampere.plan")
    assert plan["reason"].startswith("no usable CUDA GPU")
    assert report["ok"] is True and report["input"] == {"input": [1, 3, 640, 640]}
    assert main(["doctor", str(bundle)]) == 0
    text = capsys.readouterr().out
    assert "engine-rtx-ampere.plan on tensorrt-rtx: skipped (no usable CUDA GPU" in text
    assert "\ngpu: none detected\n" in text
    assert (
        "checked: 0 artifact(s) compared with ONNX Runtime CPU, 2 skipped (nothing but the reference runs here)" in text
    )
    assert text.rstrip().endswith("result: ok")
    assert report["compared"] == 0 and report["skipped"] == 2


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(), reason="onnxruntime has CUDA here"
)
def test_cuda_provider_that_does_not_start_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Facts of a CUDA machine with onnxruntime-gpu (the hardware boundary) on this CPU-only onnxruntime: the CUDA
    run must not silently run on the CPU and pass as "ok" against the CPU reference."""
    from edge.cli.doctor import check_bundle, format_text
    from edge.runtime import Facts

    facts = Facts(cuda=True, compute_capability="8.6", ort_providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    report = check_bundle(str(write_bundle(tmp_path / "b.bundle")), None, None, facts)
    cuda = next(a for a in report["artifacts"] if a["backend"] == "onnxruntime-cuda")
    assert cuda["status"] == "failed" and "CUDAExecutionProvider did not start" in cuda["reason"]
    assert report["ok"] is False and report["compared"] == 1
    assert "checking model.onnx on onnxruntime-cuda ..." in capsys.readouterr().err  # progress
    machine = {"target": "x", "reason": "r", "facts": "f", "cuda": True, "cuda_reason": "", "versions": {}}
    machine["gpu"] = {"name": "Orin", "compute_capability": "8.7", "driver_version": "540.4", "l4t_version": "36.4.3"}
    text = format_text(machine, report)
    assert "\ngpu: Orin (sm 8.7), driver 540.4, l4t 36.4.3\n" in text
    assert "model.onnx on onnxruntime-cuda: failed (onnxruntime: CUDAExecutionProvider did not start" in text
    assert text.endswith("result: MISMATCH: an artifact disagrees with ONNX Runtime CPU")


def test_doctor_on_a_broken_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_bundle(tmp_path / "b.bundle")
    (bundle / "model.onnx").write_bytes(b"changed")
    assert main(["doctor", str(bundle)]) == 4
    assert "does not match the manifest" in capsys.readouterr().err


# (id, output, reference, ok, max_abs)
COMPARE = [
    ("equal", np.ones((2, 3)), np.ones((2, 3)), True, 0.0),
    ("within", np.ones(4) + 5e-4, np.ones(4), True, 5e-4),
    ("beyond", np.ones(4) + 1e-2, np.ones(4), False, 1e-2),
    ("relative", np.full(3, 1000.5), np.full(3, 1000.0), True, 0.5),
    ("shape", np.ones((2, 2)), np.ones((2, 3)), False, None),
]


@pytest.mark.parametrize(("got", "ref", "ok", "max_abs"), [c[1:] for c in COMPARE], ids=[c[0] for c in COMPARE])
def test_compare(got: np.ndarray, ref: np.ndarray, ok: bool, max_abs: float | None) -> None:
    result = compare({"y": got}, {"y": ref}, atol=1e-3, rtol=1e-3)
    assert result["ok"] is ok
    if max_abs is None:
        assert "shape [2, 2] != [2, 3]" in result["outputs"]["y"]["error"]
    else:
        assert result["outputs"]["y"]["max_abs"] == pytest.approx(max_abs, rel=1e-6, abs=1e-12)
