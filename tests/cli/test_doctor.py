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
    # photos of real sizes, sized the way `edge infer` sizes them: RetinaFace takes its own size (resize none,
    # rounded up to 32): 640x480 -> 480x640, 375x500 -> 512x384
    assert report["ok"] is True and report["inputs"] == [
        {"case": "photo 640x480", "shapes": {"input": [1, 3, 480, 640]}},
        {"case": "photo 375x500", "shapes": {"input": [1, 3, 512, 384]}},
    ]
    assert report["reference"]["file"] == "model.onnx" and report["reference"]["precision"] == "fp32"
    assert main(["doctor", str(bundle)]) == 0
    text = capsys.readouterr().out
    assert "engine-rtx-ampere.plan on tensorrt-rtx: skipped (no usable CUDA GPU" in text
    assert "\ngpu: none detected\n" in text
    assert (
        "checked: 0 artifact(s) compared with FP32 ONNX Runtime CPU, 2 skipped (nothing but the reference runs here)"
        in text
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
    assert text.endswith("result: MISMATCH: an artifact disagrees with FP32 ONNX Runtime CPU or failed")


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
    # an offset near zero off by 0.002 in an output whose peak is 10: 0.02 % of the range, fine (element-wise it is 200 %)
    ("near-zero", np.array([0.003, 10.0]), np.array([0.001, 10.0]), True, 0.002),
    ("nan", np.array([np.nan, 1.0]), np.array([0.0, 1.0]), False, 0.0),
]


@pytest.mark.parametrize(("got", "ref", "ok", "max_abs"), [c[1:] for c in COMPARE], ids=[c[0] for c in COMPARE])
def test_compare(got: np.ndarray, ref: np.ndarray, ok: bool, max_abs: float | None) -> None:
    result = compare({"y": got}, {"y": ref}, atol=1e-3, rtol=1e-3)
    assert result["ok"] is ok
    if max_abs is None:
        assert "shape [2, 2] != [2, 3]" in result["outputs"]["y"]["error"]
    else:
        assert result["outputs"]["y"]["max_abs"] == pytest.approx(max_abs, rel=1e-6, abs=1e-12)
        peak = np.abs(ref).max()
        assert result["outputs"]["y"]["peak_relative_error"] == pytest.approx(max_abs / peak, rel=1e-6, abs=1e-12)


MODELS = Path(__file__).resolve().parents[1] / "data" / "models"
RETINAFACE_FLAGS = ["--resize", "none", "--color", "bgr", "--scale", "1", "--mean", "104,117,127"]
RETINAFACE_PROFILE = ["--min-shapes", "input:1x3x32x32", "--opt-shapes", "input:1x3x320x320"]
RETINAFACE_PROFILE += ["--max-shapes", "input:2x3x1024x1024"]


@pytest.fixture(scope="module")
def fp16_faces(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """RetinaFace (real weights) built fp16 for the CPU by `edge build`, its FP32 export beside the bundle."""
    from tests.runtime.bundles import retinaface_onnx

    folder = tmp_path_factory.mktemp("doctor")
    source = folder / "retinaface.onnx"
    source.write_bytes(retinaface_onnx())
    bundle = folder / "faces16.bundle"
    args = ["build", str(source), "-o", str(bundle), "--target", "cpu", "--precision", "fp16", "--no-simplify"]
    assert main([*args, *RETINAFACE_FLAGS, *RETINAFACE_PROFILE]) == 0
    return bundle, source


def test_fp16_bundle_is_compared_with_its_fp32_export(
    fp16_faces: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The export beside the bundle is found by its sha256 and is the reference: the bundle's own fp16 ONNX is
    then one of the artifacts compared (within the fp16 tolerance), on photos of real sizes, not the opt shape."""
    bundle, source = fp16_faces
    monkeypatch.chdir(tmp_path)  # not the export's folder: it is found beside the bundle
    capsys.readouterr()
    assert main(["doctor", str(bundle), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["bundle"]
    assert report["reference"]["file"] == str(source) and report["reference"]["precision"] == "fp32"
    cpu = next(a for a in report["artifacts"] if a["backend"] == "onnxruntime-cpu")
    assert cpu["status"] == "ok" and [c["case"] for c in cpu["cases"]] == ["photo 640x480", "photo 375x500"]
    assert [i["shapes"]["input"] for i in report["inputs"]] == [[1, 3, 480, 640], [1, 3, 512, 384]]
    errors = [o["peak_relative_error"] for c in cpu["cases"] for o in c["outputs"].values()]
    assert 0 < max(errors) < 3e-2  # fp16 really differs from FP32, and within the fp16 tolerance
    assert main(["doctor", str(bundle), "--reference", str(source)]) == 0
    text = capsys.readouterr().out
    assert f"reference: {source} (the export it was built from, sha256 matches), on ONNX Runtime CPU" in text
    assert "checked: 1 artifact(s) compared with FP32 ONNX Runtime CPU" in text


def test_reference_that_is_another_export_is_refused(
    fp16_faces: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, _ = fp16_faces
    capsys.readouterr()
    assert main(["doctor", str(bundle), "--reference", str(MODELS / "yolov8n-cls.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not the export this bundle was built from" in err[0] and "retinaface.onnx" in err[0]


def test_without_the_export_the_bundle_onnx_is_the_reference_and_the_report_says_so(
    fp16_faces: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import shutil

    bundle = tmp_path / "alone.bundle"
    shutil.copytree(fp16_faces[0], bundle)
    capsys.readouterr()
    assert main(["doctor", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "reference: model.onnx (fp16, the bundle's own ONNX); give --reference MODEL.onnx (the FP32 export)" in out
    assert "compared with the fp16 ONNX on ONNX Runtime CPU" in out


def test_an_artifact_that_drifts_from_fp32_is_a_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bundle whose ONNX is not what its export computes (one convolution's weights scaled by 1.1, as a broken
    conversion would leave it) fails against the FP32 export, with exit 1."""
    import onnx
    from onnx import numpy_helper

    from tests.runtime.bundles import retinaface_onnx, sha256

    original = retinaface_onnx()
    model = onnx.load_from_string(original)
    init = next(i for i in model.graph.initializer if len(i.dims) == 4)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.1, init.name))
    bundle = write_bundle(tmp_path / "drift.bundle", model.SerializeToString())
    data = json.loads((bundle / "manifest.json").read_text())
    data["model"]["source_sha256"] = sha256(original)  # built from the true export
    (bundle / "manifest.json").write_text(json.dumps(data))
    (tmp_path / "retinaface.onnx").write_bytes(original)
    assert main(["doctor", str(bundle)]) == 1
    out = capsys.readouterr().out
    assert "model.onnx on onnxruntime-cpu: mismatch" in out and "MISMATCH" in out
    assert out.rstrip().endswith("result: MISMATCH: an artifact disagrees with FP32 ONNX Runtime CPU or failed")


def test_plans_get_a_tf32_allowance_at_fp32() -> None:
    """TensorRT plans run FP32 layers on TF32 by default (Ampere+): fp32 plans are judged at 2 % of each output's
    range, the ONNX on ONNX Runtime at 0.1 %; the reduced precisions keep theirs; --atol/--rtol override all."""
    from edge.cli.doctor import tolerance

    assert tolerance("fp32", "onnxruntime", None, None) == (1e-4, 1e-3)
    assert tolerance("fp32", "tensorrt-rtx", None, None) == (1e-3, 2e-2)
    assert tolerance("fp32", "tensorrt", None, None) == (1e-3, 2e-2)
    assert tolerance("fp16", "tensorrt-rtx", None, None) == tolerance("fp16", "onnxruntime", None, None)
    assert tolerance("fp32", "tensorrt", 0.5, None) == (0.5, 2e-2)
    assert tolerance("int8", "onnxruntime", None, 0.3) == (1e-2, 0.3)


def _as_int8_bundle(folder: Path, scale_first_conv: float) -> Path:
    """A bundle of RetinaFace whose first convolution's weights are scaled (a stand-in for what quantization does
    to raw outputs), marked int8 and built from the true export, which sits beside it."""
    import onnx
    from onnx import numpy_helper

    from tests.runtime.bundles import retinaface_onnx, sha256

    original = retinaface_onnx()
    model = onnx.load_from_string(original)
    init = next(i for i in model.graph.initializer if len(i.dims) == 4)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * scale_first_conv, init.name))
    bundle = write_bundle(folder / "q.bundle", model.SerializeToString())
    data = json.loads((bundle / "manifest.json").read_text())
    data["model"]["source_sha256"] = sha256(original)
    data["precision"] = data["artifacts"][0]["precision"] = "int8"
    (bundle / "manifest.json").write_text(json.dumps(data))
    (folder / "retinaface.onnx").write_bytes(original)
    return bundle


def test_quantized_bundles_are_judged_by_their_results_on_real_photos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """int8: raw regression outputs drift (reported) while the faces found stay the same: ok. The same with a
    broken first layer finds other boxes: MISMATCH, exit 1."""
    from tests.runtime.bundles import photo_path

    photos = [str(photo_path("astronaut")), str(photo_path("grace_hopper"))]
    (tmp_path / "a").mkdir()
    drifting = _as_int8_bundle(tmp_path / "a", 1.05)
    assert main(["doctor", str(drifting), "--images", *photos, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["bundle"]
    cpu = next(a for a in report["artifacts"] if a["backend"] == "onnxruntime-cpu")
    assert [c["case"] for c in cpu["cases"]] == ["astronaut.png", "grace_hopper.jpg"]
    for case in cpu["cases"]:
        assert case["results"] == {"metric": "box_f1", "value": 1.0, "ok": True, "boxes": [1, 1]}
        assert max(o["peak_relative_error"] for o in case["outputs"].values()) > 0  # the raw outputs do differ
    (tmp_path / "b").mkdir()
    broken = _as_int8_bundle(tmp_path / "b", -1.0)
    assert main(["doctor", str(broken), "--images", *photos]) == 1
    out = capsys.readouterr().out
    assert "results: box_f1 " in out and " MISMATCH" in out and out.rstrip().endswith("or failed")
