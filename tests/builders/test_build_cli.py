"""``edge build`` end to end: real TensorRT-RTX AOT builds, INT8 calibration on real photos, the accuracy
gate, and every bad input failing with one ``error:`` line, its exit code and nothing left on disk."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge.cli import main
from edge.manifest import read_manifest, sha256_file, verify_file

RETINA = [
    "--color",
    "bgr",
    "--scale",
    "1",
    "--mean",
    "104,117,127",
    "--std",
    "1",
    "--task",
    "detect",
    "--decoder",
    "retinaface",
]


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    rc = main(["build", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return rc, out, err


def error_lines(err: str) -> list[str]:
    """stderr without progress lines and log records: what the user reads as the error."""
    return [line for line in err.splitlines() if line.startswith(("error", "Traceback"))]


def test_retinaface_fp16_for_rtx_ampere_and_ada_in_one_plan(
    retinaface_onnx: Path, photos_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "faces.bundle"
    labels = tmp_path / "labels.txt"
    labels.write_text("face\n\n")
    rc, stdout, _ = run_cli(
        capsys, retinaface_onnx, "-o", out, "--target", "rtx-ampere", "--target", "rtx-ada", "--precision", "fp16",
        "--min-shapes", "input:1x3x640x640", "--max-shapes", "input:4x3x640x640", "--labels", labels, *RETINA,
        "--calib", photos_dir, "--max-drop", "0.01",
    )  # fmt: skip
    assert rc == 0
    # the gate on the FP16 model: fed at the profile's opt shape, 4 photos per sample (6 photos: 1 sample)
    assert re.search(
        r"accuracy   box_recall 1\.0000 \[95% 0\.\d{4}\.\.1\.0000\] vs FP32 on 1 sample, drop 0\.00% \(gate 1\.00%: passed\)",
        stdout,
    )
    assert stdout.splitlines()[0] == f"bundle: {out}"
    assert re.search(r"engine-rtx-ampere\+rtx-ada\.plan\s+tensorrt-rtx rtx-ampere, rtx-ada sm 8\.6/8\.9", stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.bundle", "labels.txt"]
    bundle_files = ["engine-rtx-ampere+rtx-ada.plan", "labels.txt", "manifest.json", "model.onnx"]
    assert sorted(p.name for p in out.iterdir()) == bundle_files
    assert (out / "labels.txt").read_text() == "face\n"
    m = read_manifest(out)
    assert (m.name, m.source, m.precision) == ("retinaface", "retinaface.onnx", "fp16")
    assert m.source_sha256 == sha256_file(retinaface_onnx)
    onnx_art, plan = m.artifacts
    assert (onnx_art.file, onnx_art.backend, onnx_art.targets) == ("model.onnx", "onnxruntime", ("any",))
    assert (plan.backend, plan.targets, plan.compute_capabilities) == (
        "tensorrt-rtx",
        ("rtx-ampere", "rtx-ada"),
        ("8.6", "8.9"),
    )
    assert plan.tensorrt_version and plan.tensorrt_version.startswith("1.") and plan.cuda_version in ("12", "13")
    assert set(re.findall(rb"sm\d{2,3}", (out / plan.file).read_bytes())) == {b"sm86", b"sm89"}
    for name, entry in m.files.items():
        verify_file(out, name, entry["sha256"])
        assert entry["size"] == (out / name).stat().st_size
    assert set(m.files) == {"model.onnx", "labels.txt", plan.file}
    assert m.postprocess.labels == ("face",)
    assert m.accuracy is not None and m.accuracy["passed"] is True and m.accuracy["metric"] == "box_recall"
    assert m.accuracy["boxes"]["reference"] >= 1 and m.accuracy["outputs"]["loc"]["cosine"] > 0.999
    assert m.inputs[0].profile == {"min": (1, 3, 640, 640), "opt": (4, 3, 640, 640), "max": (4, 3, 640, 640)}
    assert (m.preprocess.color, m.preprocess.mean, m.postprocess.decoder) == (
        "bgr",
        (104.0, 117.0, 127.0),
        "retinaface",
    )
    assert m.builder["targets"] == ["rtx-ampere", "rtx-ada"] and m.builder["skipped"] == {}
    assert "--target rtx-ampere --target rtx-ada" in m.builder["command"]
    assert m.builder["libraries"]["tensorrt-rtx"] == plan.tensorrt_version
    model = onnx.load(str(out / "model.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O kept


def test_int8_with_an_rtx_target_warns_that_tensorrt_rtx_runs_it_unquantized(
    retinaface_onnx: Path,
    photos_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # TensorRT-RTX lists INT8 only for weight-only GEMM: the Q/DQ convolutions run unquantized in the RTX plan.
    out = tmp_path / "faces-int8.bundle"
    with caplog.at_level("WARNING", logger="builders.targets"):
        rc, _, err = run_cli(
            capsys, retinaface_onnx, "-o", out, "--target", "rtx-ampere", "--target", "cpu", "--precision", "int8",
            "--calib", photos_dir, "--size", "320x320", *RETINA,
        )  # fmt: skip
    assert rc == 0, err
    warned = [r.getMessage() for r in caplog.records if "runs INT8 only for weight-only GEMM" in r.getMessage()]
    assert len(warned) == 1 and "use --precision fp16 for RTX" in warned[0], caplog.text
    m = read_manifest(out)
    assert m.precision == "int8" and {a.backend for a in m.artifacts} == {"onnxruntime", "tensorrt-rtx"}
    assert len(m.builder["notes"]) == 1 and "use --precision fp16 for RTX" in m.builder["notes"][0]


@pytest.mark.parametrize(
    ("targets", "better"),
    [(("rtx-ada",), "fp16 or fp8"), (("rtx-ada", "rtx-blackwell"), "fp16 or fp8"), (("rtx-turing", "rtx-ada"), "fp16")],
)
def test_the_rtx_int8_warning_names_fp8_only_when_every_rtx_target_has_it(
    targets: tuple[str, ...], better: str
) -> None:
    import platforms
    from builders.targets import rtx_int8_note

    note = rtx_int8_note([platforms.resolve_target(t) for t in targets])
    assert f"use --precision {better} for RTX" in note and ", ".join(targets) in note


def test_retinaface_int8_for_cpu_calibrated_on_photos_passes_the_gate(
    retinaface_onnx: Path, photos_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "faces-int8.bundle"
    rc, stdout, _ = run_cli(
        capsys, retinaface_onnx, "-o", out, "--target", "cpu", "--precision", "int8", "--calib", photos_dir,
        "--size", "640x640", "--max-drop", "0.05", "--name", "faces", *RETINA,
    )  # fmt: skip
    assert rc == 0
    # 6 photos: 1 held out (20 %, by hash of the name) for the gate, 5 calibrate; the report says which
    assert re.search(
        r"accuracy   box_recall 1\.0000 \[95% 0\.\d{4}\.\.1\.0000\] vs FP32 on 1 held-out sample, drop 0\.00% "
        r"\(gate 5\.00%: passed\)",
        stdout,
    )
    m = read_manifest(out)
    assert (m.name, m.precision, [a.file for a in m.artifacts]) == ("faces", "int8", ["model.onnx"])
    assert m.calibration is not None
    assert (m.calibration["method"], m.calibration["images"], m.calibration["source"]) == ("entropy", 5, "photos")
    assert m.accuracy is not None
    held = m.accuracy["validation"]
    assert held["count"] == 1 and held["source"] == "held out from --calib photos"
    photos = sorted(p.name for p in photos_dir.iterdir())
    assert held["items"] == [min(photos, key=lambda n: hashlib.sha256(n.encode()).hexdigest())]
    assert any("too few" in note for note in m.accuracy["notes"])
    assert m.accuracy is not None and m.accuracy["passed"] is True and m.accuracy["max_drop"] == 0.05
    assert m.accuracy["boxes"]["reference"] >= 1
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_light_resnet50_with_a_dynamic_batch_profile(
    resnet50_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r50.bundle"
    name = "gpu_0/data_0"
    rc, stdout, _ = run_cli(
        capsys, resnet50_onnx, "-o", out, "--target", "rtx-blackwell,cpu", "--precision", "fp32",
        "--min-shapes", f"{name}:1x3x224x224", "--opt-shapes", f"{name}:4x3x224x224", "--max-shapes", f"{name}:16x3x224x224",
        "--task", "classify",
    )  # fmt: skip
    assert rc == 0, stdout
    m = read_manifest(out)
    assert m.inputs[0].shape == (-1, 3, 224, 224)
    assert m.inputs[0].profile == {"min": (1, 3, 224, 224), "opt": (4, 3, 224, 224), "max": (16, 3, 224, 224)}
    assert [(a.file, a.targets) for a in m.artifacts] == [
        ("model.onnx", ("any",)),
        ("engine-rtx-blackwell.plan", ("rtx-blackwell",)),
    ]
    # the bundle's ONNX really takes a batch of 3 (the cpu target runs it)
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {name: np.zeros((3, 3, 224, 224), np.float32)})
    assert probs.shape == (3, 1000)


Setup = Callable[[dict[str, Path], Path], list[object]]


def _not_onnx(f: dict[str, Path], tmp: Path) -> list[object]:
    bad = tmp / "notes.onnx"
    bad.write_text("this is a text file, not a model\n")
    return [bad, "--target", "cpu"]


def _truncated(f: dict[str, Path], tmp: Path) -> list[object]:
    bad = tmp / "cut.onnx"
    bad.write_bytes(f["retina"].read_bytes()[:300_000])
    return [bad, "--target", "cpu"]


def _empty_dir(f: dict[str, Path], tmp: Path) -> list[object]:
    (tmp / "empty").mkdir()
    return [
        f["retina"],
        "--target",
        "cpu",
        "--precision",
        "int8",
        "--calib",
        tmp / "empty",
        "--size",
        "320x320",
        *RETINA,
    ]


def _empty_dir_checked_first(f: dict[str, Path], tmp: Path) -> list[object]:
    """An empty --calib folder is refused before the model is even read (here: not ONNX at all)."""
    (tmp / "empty").mkdir()
    return [*_not_onnx(f, tmp), "--precision", "int8", "--calib", tmp / "empty"]


def _empty_val_dir(f: dict[str, Path], tmp: Path) -> list[object]:
    (tmp / "novals").mkdir()
    return [f["retina"], "--target", "cpu", "--precision", "fp16", "--calib", f["photos"], "--val", tmp / "novals",
            "--size", "320x320", *RETINA]  # fmt: skip


def _empty_labels(f: dict[str, Path], tmp: Path) -> list[object]:
    (tmp / "labels.txt").write_text("\n  \n")
    return [f["retina"], "--target", "cpu", "--size", "320x320", "--labels", tmp / "labels.txt"]


ERRORS: list[tuple[str, Setup, int, str]] = [
    ("empty labels file", _empty_labels, 2, r"--labels .*labels\.txt: the file has no labels \(expected one label per line\)"),
    ("not onnx", _not_onnx, 3, r"notes\.onnx: not an ONNX model"),
    ("truncated", _truncated, 3, r"cut\.onnx: truncated"),
    ("unsupported operator", lambda f, t: [f["det"], "--target", "rtx-ada"], 3,
     r"det\.onnx: TensorRT-RTX cannot parse the model: node det_node \(Det\): TensorRT-RTX 1\.\S+ cannot import this operator"),
    ("unknown target", lambda f, t: [f["retina"], "--target", "rtx-9000"], 2,
     r"unknown target 'rtx-9000'; valid targets: jetson-agx-orin-64gb, .*rtx-ada.*, cpu"),
    ("precision the target lacks", lambda f, t: [f["retina"], "--target", "rtx-ampere", "--precision", "fp8", "--calib", f["photos"]], 2,
     r"--precision fp8: target rtx-ampere \(.*\) does not support it; its precisions are fp32, fp16, bf16, int8$"),
    ("precision the target lacks, before asking for --calib", lambda f, t: [f["retina"], "--target", "rtx-ampere", "--precision", "fp8"], 2,
     r"--precision fp8: target rtx-ampere \(.*\) does not support it; its precisions are fp32, fp16, bf16, int8$"),
    ("int8 without calibration", lambda f, t: [f["retina"], "--target", "cpu", "--precision", "int8"], 2,
     r"--precision int8 needs --calib DIR"),
    ("missing calibration folder", lambda f, t: [f["retina"], "--target", "cpu", "--precision", "int8", "--calib", t / "nope"], 2,
     r"--calib .*nope: no such file or folder"),
    ("empty calibration folder", _empty_dir, 3, r"empty: no images to calibrate on"),
    ("empty calibration folder, checked before loading", _empty_dir_checked_first, 3, r"empty: no images to calibrate on"),
    ("empty validation folder", _empty_val_dir, 3, r"novals: no images to calibrate on"),
    ("jetson target without classic TensorRT", lambda f, t: [f["retina"], "--target", "jetson-orin-nano-8gb", "--size", "320x320"], 3,
     r"target jetson-orin-nano-8gb: classic TensorRT is not installed here: build it on the device with scripts/build_engine\.py; or pass --skip-unavailable"),
    ("dla without a dla target", lambda f, t: [f["retina"], "--target", "rtx-ada", "--dla", "0"], 2,
     r"--dla 0: none of the targets has a DLA \(targets with DLA: jetson-agx-orin-64gb"),
    ("dynamic input without shapes", lambda f, t: [f["retina"], "--target", "rtx-ada"], 2,
     r"input 'input' has dynamic axes \(\?x3x\?x\?\) and no shape was given"),
    ("accuracy gate fails", lambda f, t: [f["retina"], "--target", "cpu", "--precision", "int8", "--calib", f["photos"], "--size", "320x320",
     "--color", "bgr", "--scale", "1", "--mean", "104,117,127", "--max-drop", "0.01"], 3,
     r"accuracy gate: drop \d+\.\d\d% exceeds --max-drop 1\.00% \(cosine 0\.\d+ vs the FP32 reference on 1 samples "
     r"\(95 % interval 0\.\d+\.\.0\.\d+\)"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "setup", "code", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_fails_with_one_line_and_leaves_nothing(
    case: str,
    setup: Setup,
    code: int,
    message: str,
    retinaface_onnx: Path,
    unsupported_onnx: Path,
    photos_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    args = setup({"retina": retinaface_onnx, "det": unsupported_onnx, "photos": photos_dir}, inputs)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, stdout, err = run_cli(capsys, args[0], "-o", out_dir / "m.bundle", *args[1:])
    lines = error_lines(err)
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert stdout == ""
    assert list(out_dir.iterdir()) == []  # no bundle, no temp dir


def test_existing_output_needs_force(retinaface_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.bundle"
    args = [retinaface_onnx, "-o", out, "--target", "cpu", "--precision", "fp32", "--size", "320x320"]
    assert run_cli(capsys, *args)[0] == 0
    before = (out / "manifest.json").read_bytes()
    rc, _, err = run_cli(capsys, *args)
    assert rc == 3
    assert error_lines(err) == [f"error: {out}: already exists; pass --force to replace it, or choose another -o path"]
    assert (out / "manifest.json").read_bytes() == before
    rc, _, _ = run_cli(capsys, *args, "--force", "--name", "again")
    assert rc == 0 and read_manifest(out).name == "again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bundle"]


def test_skip_unavailable_builds_the_rest_and_records_the_skipped_target(
    retinaface_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.bundle"
    rc, stdout, _ = run_cli(
        capsys, retinaface_onnx, "-o", out, "--target", "jetson-orin-nx-16gb", "--target", "rtx-ada",
        "--size", "320x320", "--skip-unavailable",
    )  # fmt: skip
    assert rc == 0
    m = read_manifest(out)
    assert m.precision == "fp16"  # the default on GPU targets
    assert [a.file for a in m.artifacts] == ["model.onnx", "engine-rtx-ada.plan"]
    assert list(m.builder["skipped"]) == ["jetson-orin-nx-16gb"]
    assert "skipped    jetson-orin-nx-16gb: classic TensorRT is not installed here" in stdout


OPTION_ERRORS = [
    ({"targets": ()}, r"--target: give at least one target"),
    ({"targets": ("cpu", "cpu")}, r"--target: a target is given twice"),
    ({"precision": "int4"}, r"--precision: 'int4' is not one of fp32, fp16, int8, fp8"),
    ({"task": "detect"}, r"--task detect needs --decoder"),
    ({"decoder": "yolov8"}, r"--decoder yolov8 needs --task detect, segment, pose or obb$"),
    ({"task": "pose", "decoder": "retinaface"}, r"--task pose takes --decoder yolov8 or yolov10 .*not retinaface$"),
    (
        {"targets": ("rtx-ampere", "auto"), "precision": "fp8"},
        r"--precision fp8: target rtx-ampere .* its precisions are fp32, fp16, bf16, int8$",
    ),
    ({"precision": "fp32", "calib": Path(".")}, r"--calib is used by --precision fp16 \(range check\), int8 and fp8"),
    ({"precision": "int8", "calib": Path("."), "max_drop": 2.0}, r"--max-drop: expected a fraction in \[0, 1\]"),
    ({"precision": "fp16", "max_drop": 0.01}, r"--max-drop needs images to measure on"),
    ({"precision": "fp32", "val": Path(".")}, r"--val and --max-drop check a reduced precision"),
    ({"dla": -1}, r"--dla: a DLA core number is 0 or more"),
    ({"optimization_level": 6}, r"--opt-level: expected 0\.\.5"),
    ({"std": (1.0, 0.0, 1.0)}, r"--std: values must be non-zero"),
    ({"labels": Path("no-such-labels.txt")}, r"--labels no-such-labels\.txt: no such file or folder"),
    ({"hardware_compatibility": "turing+"}, r"--hardware-compatibility: 'turing\+' is not one of ampere\+, same-cc"),
]


@pytest.mark.parametrize("task", ["segment", "pose", "obb"])
@pytest.mark.parametrize("decoder", [None, "yolov8", "yolov10"])
def test_ultralytics_heads_take_both_yolo_decoders(task: str, decoder: str | None) -> None:
    from builders.options import BuildOptions

    options = BuildOptions(model=Path("m.onnx"), output=Path("m.bundle"), task=task, decoder=decoder)
    assert (options.task, options.decoder) == (task, decoder)  # end-to-end (yolov10 layout) heads included


@pytest.mark.parametrize(("fields", "message"), OPTION_ERRORS)
def test_build_options_are_validated_once_up_front(fields: dict[str, object], message: str) -> None:
    from builders.options import BuildOptions
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        BuildOptions(model=Path("m.onnx"), output=Path("m.bundle"), **fields)  # type: ignore[arg-type]


TARGET_ERRORS = [
    (("rtx-ada",), {"dla": 0}, r"--dla 0: none of the targets has a DLA"),
    (("jetson-orin-nx-8gb",), {"dla": 1}, r"--dla 1: target jetson-orin-nx-8gb has 1 DLA core\(s\) \(0\.\.0\)"),
    (("rtx-ada", "cpu"), {"timing_cache": Path("t.cache")}, r"--timing-cache applies to classic TensorRT targets"),
    (("rtx-ada",), {"version_compatible": True}, r"--version-compatible applies to classic TensorRT targets"),
    (("jetson-orin-nano-8gb",), {"hardware_compatibility": "ampere+"}, r"--hardware-compatibility is not supported by TensorRT on JetPack"),
    (("hopper",), {"precision": "fp16"}, r"target hopper: classic TensorRT is not installed here"),
    (("cpu",), {"calib": Path(".")}, r"--calib/--val/--max-drop apply to fp16, int8 and fp8, and this build is fp32"),
]  # fmt: skip


@pytest.mark.parametrize(("targets", "fields", "message"), TARGET_ERRORS)
def test_engine_plan_refuses_what_the_targets_cannot_do(
    targets: tuple[str, ...], fields: dict[str, object], message: str
) -> None:
    from builders.options import BuildOptions
    from builders.targets import plan_engines
    from edge.errors import EdgeError

    options = BuildOptions(model=Path("m.onnx"), output=Path("m.bundle"), targets=targets, **fields)  # type: ignore[arg-type]
    with pytest.raises(EdgeError, match=message):
        plan_engines(options)


def test_engine_plan_checks_the_precision_of_every_resolved_target() -> None:
    # BuildOptions already refuses it for named targets; the plan checks the resolved ones (`auto` too)
    import platforms
    from builders.targets import choose_precision
    from edge.errors import ConfigError

    ampere, ada = platforms.get_target("rtx-ampere"), platforms.get_target("rtx-ada")
    assert choose_precision("fp8", [ada]) == "fp8"
    with pytest.raises(ConfigError, match=r"target rtx-ampere .* its precisions are fp32, fp16, bf16, int8$"):
        choose_precision("fp8", [ada, ampere])


@pytest.mark.parametrize(
    ("targets", "precision", "rtx", "onnx_only"),
    [
        (("rtx-ampere", "rtx-ada", "cpu"), "fp32", ["rtx-ampere", "rtx-ada"], ["cpu"]),
        (("rtx-ada", "rtx-turing"), "fp16", ["rtx-ada", "rtx-turing"], []),
        (("cpu", "auto"), "fp32", [], ["cpu"]),  # auto is this machine (cpu here): no duplicate
    ],
)
def test_engine_plan_groups_targets_and_picks_the_default_precision(
    targets: tuple[str, ...], precision: str, rtx: list[str], onnx_only: list[str]
) -> None:
    from builders.options import BuildOptions
    from builders.targets import plan_engines

    plan = plan_engines(BuildOptions(model=Path("m.onnx"), output=Path("m.bundle"), targets=targets))
    assert plan.precision == precision
    assert [t.id for t in plan.rtx] == rtx and [t.id for t in plan.onnx_only] == onnx_only
    assert plan.classic == [] and plan.skipped == {}


# -- through a real process: exit codes, no traceback, Ctrl-C ---------------------------------------------------


def edge_process(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edge", "build", *(str(a) for a in args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False, timeout=120)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--target", "rtx-9000"], 2, "error: unknown target 'rtx-9000'; valid targets: "),
        (["--target", "cpu", "--precision", "fp8", "--calib", "."], 2, "error: --precision fp8: target cpu "),
        (
            ["--target", "cpu", "--size", "320x320", "--workspace", "0"],
            2,
            "error: --workspace: expected a positive number, got 0",
        ),
    ],
)
def test_process_exit_codes_and_one_line_errors(
    retinaface_onnx: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = edge_process(retinaface_onnx, "-o", "m.bundle", *args, cwd=tmp_path)
    assert result.returncode == code
    assert "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [result.stderr.strip().splitlines()[-1]]
    assert result.stderr.strip().splitlines()[-1].startswith(message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_process_interrupted_during_the_engine_build_leaves_nothing(
    resnet50_onnx: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    # -v: TensorRT logs ~130 kB during the build, more than a pipe holds, so the child cannot finish the
    # build while this test is slow to read: it blocks in TensorRT's log callback (the case where an
    # exception raised there would be swallowed) until the signal has been sent.
    name = "gpu_0/data_0"
    cmd = [sys.executable, "-m", "edge", "-v", "build", str(resnet50_onnx), "-o", "r.bundle", "--target", "rtx-ada",
           "--precision", "fp32", "--opt-level", "5", "--min-shapes", f"{name}:1x3x224x224", "--max-shapes", f"{name}:32x3x224x224"]  # fmt: skip
    # A shell's background jobs (CI may run so) ignore SIGINT, and children inherit that: give the child
    # the default disposition a terminal user has, so Python turns Ctrl-C into KeyboardInterrupt.
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # wait until the engine build has started, then press Ctrl-C
        seen.append(line)
        if "TensorRT-RTX build rtx-ada: started" in line:
            proc.send_signal(signum)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, "".join(seen) + rest
    assert rest.strip().splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in rest
    assert list(tmp_path.iterdir()) == []


# -- scripts/build_engine.py ------------------------------------------------------------------------------------

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_engine.py"


def test_build_engine_script_builds_with_the_checkout(retinaface_onnx: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), str(retinaface_onnx), "-o", "m.bundle", "--target", "cpu", "--size", "320x320"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    m = read_manifest(tmp_path / "m.bundle")
    assert m.builder["command"].startswith("build_engine.py ")
    which = subprocess.run([sys.executable, str(SCRIPT), "--which"], capture_output=True, text=True, check=True)
    assert which.stdout.startswith(f"checkout {SCRIPT.parents[1]}")


def test_build_engine_script_targets_this_machine_by_default(retinaface_onnx: Path, tmp_path: Path) -> None:
    import platforms

    cmd = [sys.executable, str(SCRIPT), str(retinaface_onnx), "-o", "m.bundle", "--size", "320x320"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    m = read_manifest(tmp_path / "m.bundle")
    assert m.builder["targets"] == [platforms.detect().platform.id]  # `auto`, resolved (cpu on CI)
    assert "--target" not in m.builder["command"]


def test_build_engine_pack_is_one_file_that_runs_alone(retinaface_onnx: Path, tmp_path: Path) -> None:
    pyz = tmp_path / "build_engine.pyz"
    packed = subprocess.run(
        [sys.executable, str(SCRIPT), "--pack", str(pyz)], capture_output=True, text=True, check=False
    )
    assert packed.returncode == 0, packed.stderr
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    work = tmp_path / "device"
    work.mkdir()
    env = {"EDGE_KIT_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    which = subprocess.run(
        [sys.executable, str(pyz), "--which"], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    assert which.returncode == 0, which.stderr
    assert which.stdout.startswith(f"packed copy {pyz}")
    unpacked = next((tmp_path / "cache").iterdir())
    assert (unpacked / "platforms" / "profiles" / "rtx-ada.yaml").is_file()
    cmd = [sys.executable, str(pyz), str(retinaface_onnx), "-o", "m.bundle", "--target", "cpu", "--size", "320x320"]
    built = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert built.returncode == 0, built.stderr
    assert json.loads((work / "m.bundle" / "manifest.json").read_text())["precision"] == "fp32"


def test_build_engine_alone_without_the_kit_says_how_to_get_it(tmp_path: Path) -> None:
    lone = tmp_path / "build_engine.py"
    lone.write_text(SCRIPT.read_text())
    # -S: no site-packages, so neither the installed kit nor a checkout is reachable
    result = subprocess.run([sys.executable, "-S", str(lone), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: the edge kit was not found: build_engine.py is not a packed copy, {tmp_path.parent} holds no "
        f"edge/, builders/ and platforms/, and {Path(sys.executable).name} cannot import them; this script alone "
        "is not enough: on a machine with the kit run `python scripts/build_engine.py --pack build_engine.pyz` "
        "and copy that one file here, or install the kit (`pip install edge-kit[build]`)"
    )


def test_build_engine_help_lists_its_own_options() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "--pack OUT.pyz   write one executable file carrying the kit and this script" in result.stdout
    assert "--which          say where the kit was found" in result.stdout
    assert "--precision" in result.stdout  # and every `edge build` flag


def test_build_engine_pack_on_a_python_without_the_builder_dependencies(retinaface_onnx: Path, tmp_path: Path) -> None:
    # a fresh python3 before `pip3 install ...`: -S hides site-packages, so PyYAML (the target profiles, read
    # first), numpy, onnx, ... are absent
    pyz = tmp_path / "build_engine.pyz"
    subprocess.run([sys.executable, str(SCRIPT), "--pack", str(pyz)], capture_output=True, check=True)
    env = {"EDGE_KIT_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    cmd = [sys.executable, "-S", str(pyz), str(retinaface_onnx), "-o", "m.bundle", "--target", "cpu"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 3
    assert result.stderr.strip() == (
        "error: the builder needs the Python package pyyaml, which is not installed here: pip install "
        "'edge-kit[build]' (on a Jetson, whose python3 has TensorRT and OpenCV: pip3 install onnx onnxruntime "
        "onnxslim 'numpy<2' pyyaml)"
    )
    assert not (tmp_path / "m.bundle").exists()


def test_a_dependency_missing_mid_build_is_one_line_and_leaves_nothing(
    retinaface_onnx: Path,
    photos_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ONNX Runtime's quantization tools (int8 only, imported when the quantization starts, after calibration)
    # missing: a None entry in sys.modules makes the import fail exactly as an absent package does
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [retinaface_onnx, "-o", out_dir / "m.bundle", "--target", "cpu", "--precision", "int8", "--size", "320x320",
            "--calib", photos_dir]  # fmt: skip
    rc, stdout, err = run_cli(capsys, *args)
    assert rc == 3 and stdout == ""
    assert error_lines(err) == [
        "error: the builder needs the Python package onnxruntime, which is not installed here: pip install "
        "'edge-kit[build]' (on a Jetson, whose python3 has TensorRT and OpenCV: pip3 install onnx onnxruntime "
        "onnxslim 'numpy<2' pyyaml)"
    ]
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("name", ["builders.onnx_stages", "edge.nothing", "platforms", None])
def test_a_missing_module_of_the_kit_itself_is_not_disguised(name: str | None) -> None:
    from edge.cli.build import missing_dependency

    assert missing_dependency(ModuleNotFoundError("x", name=name)) is None
    assert "package pyyaml" in str(missing_dependency(ModuleNotFoundError("x", name="yaml")))


@pytest.mark.parametrize(
    ("model", "flags", "message"),
    [
        ("yolov8n-cls", ["--task", "detect", "--decoder", "yolov8"], r"--task detect --decoder yolov8 does not fit"),
        (
            "yolov8n-detect-static",
            ["--task", "classify"],
            r"--task classify does not fit this model: .*\[1, 84, 1029\].*; --task detect --decoder yolov8 reads it$",
        ),
        # Dynamic outputs ([1, 84, anchors]): checked on one ONNX Runtime run at the profile's shape.
        (
            "yolov8n-detect-dyn",
            ["--size", "256x256", "--task", "classify"],
            r"--task classify does not fit this model: .*\[1, 84, 1344\].*; --task detect --decoder yolov8 reads it$",
        ),
        (
            "yolov8n-detect-dyn",
            ["--size", "256x256", "--task", "detect", "--decoder", "yolov8", "--labels", "TEN"],
            r"nc = 10 \(the labels\).*; --task detect --decoder yolov8 without the 10 --labels reads it$",
        ),
        # A pose head read as a detector without labels fits the layout (52 'classes') but not the scores.
        (
            "yolov8n-pose",
            ["--task", "detect", "--decoder", "yolov8"],
            r"reads scores from .* \(scores are 0\.\.1\).*; --task pose --decoder yolov8 reads it$",
        ),
    ],
)
def test_a_decoder_that_cannot_read_the_model_fails_before_the_build(
    model: str, flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = Path(__file__).resolve().parents[1] / "data" / "models" / f"{model}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is not there")
    if "TEN" in flags:
        labels = tmp_path.parent / f"{tmp_path.name}-ten.txt"
        labels.write_text("".join(f"class{i}\n" for i in range(10)))
        flags = [str(labels) if f == "TEN" else f for f in flags]
    rc, stdout, err = run_cli(capsys, path, "-o", tmp_path / "m.bundle", "--target", "cpu", *flags)
    assert rc == 2 and stdout == ""
    lines = error_lines(err)
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert list(tmp_path.iterdir()) == []


def test_retinaface_read_as_a_yolo_head_fails_on_its_scores_before_the_build(
    retinaface_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # RetinaFace's outputs are dynamic ([1, N, 4], [1, N, 2], [1, N, 10]); yolov8 takes the 10 landmark
    # numbers for 6 class scores (values well beyond 1) unless the build runs the model and looks.
    out = tmp_path / "faces.bundle"
    rc, _, err = run_cli(
        capsys,
        retinaface_onnx,
        "-o",
        out,
        "--target",
        "cpu",
        "--size",
        "320x320",
        "--task",
        "detect",
        "--decoder",
        "yolov8",
    )
    lines = error_lines(err)
    assert rc == 2 and len(lines) == 1, err
    assert re.search(
        r"--decoder yolov8 does not fit this model: .*scores.*; --task detect --decoder retinaface reads it$", lines[0]
    )
    assert not out.exists()
