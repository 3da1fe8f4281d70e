"""``edge build`` vs the bare TensorRT-RTX API build of the same ONNX, and INT8-vs-FP32 agreement.

For the onnx package's light ResNet-50 (dynamic batch 1..8) and RetinaFace (640x640, batch 1..4), in
the same run, each as a fresh process (interpreter start and imports included on both sides):

- **kit**: ``edge build MODEL -o OUT --target rtx-ada --precision fp32`` (load, checker, shape
  inference, simplifier, shape checks through ONNX Runtime, TensorRT-RTX build, bundle with hashes);
  also ``--precision fp16`` (adds the FP16 conversion) for information;
- **baseline**: a minimal script doing only what a bare TensorRT-RTX build needs (Builder, strongly
  typed network, OnnxParser, one profile, compute capability 8.9, build, write the plan).

Wall time and peak RSS (``wait4``) per run, median of the repeats; goal: kit fp32 <= 1.5x baseline.
A ``--no-simplify`` row separates the simplifier's share (onnxslim, its imports and its ORT check).

INT8 agreement: RetinaFace built INT8 for the cpu target, calibrated (entropy) on six scikit-image
photos and checked against FP32 on four *other* photos (``--val``, grace_hopper among them): the accuracy
report's box recall and per-output cosine similarity.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.run import Context

BASELINE = r"""
import sys
import tensorrt_rtx as trt
onnx_path, plan_path, name, lo, opt, hi = sys.argv[1:7]
dims = lambda s: tuple(int(x) for x in s.split("x"))
logger = trt.Logger(trt.Logger.ERROR)
builder = trt.Builder(logger)
network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
parser = trt.OnnxParser(network, logger)
if not parser.parse_from_file(onnx_path):
    raise SystemExit(str(parser.get_error(0)))
config = builder.create_builder_config()
profile = builder.create_optimization_profile()
profile.set_shape(name, dims(lo), dims(opt), dims(hi))
config.add_optimization_profile(profile)
config.num_compute_capabilities = 1
config.set_compute_capability(trt.ComputeCapability.SM89, 0)
plan = builder.build_serialized_network(network, config)
with open(plan_path, "wb") as f:
    f.write(plan)
"""

MODELS = {
    "resnet50-light": ("gpu_0/data_0", "1x3x224x224", "4x3x224x224", "8x3x224x224"),
    "retinaface": ("input", "1x3x640x640", "4x3x640x640", "4x3x640x640"),
}
RETINA_SPEC = ["--color", "bgr", "--scale", "1", "--mean", "104,117,127", "--task", "detect", "--decoder", "retinaface"]
CALIB = ("astronaut.png", "camera.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")
VAL = ("coffee.png", "motorcycle_right.png", "retina.jpg")


def _light_resnet50() -> Any:
    """The onnx package's light ResNet-50 with a dynamic batch axis (as tests/builders/conftest.py)."""
    import numpy as np
    import onnx
    import onnx.numpy_helper as onh

    model = onnx.load(str(Path(onnx.__file__).parent / "backend/test/data/light/light_resnet50.onnx"))
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.ir_version = max(model.ir_version, 4)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = "N"
    for t in model.graph.initializer:
        if t.name == "OC2_DUMMY_1":
            t.CopyFrom(onh.from_array(np.array([-1, 2048], dtype=np.int64), t.name))
    return model


def _models(work: Path) -> dict[str, Path]:
    import onnx
    from retinaface.weights import WEIGHTS

    paths = {"resnet50-light": work / "resnet50-light.onnx", "retinaface": work / "retinaface.onnx"}
    onnx.save(_light_resnet50(), str(paths["resnet50-light"]))
    paths["retinaface"].write_bytes(WEIGHTS)
    return paths


def _photos(work: Path) -> tuple[Path, Path]:
    import matplotlib
    import skimage

    data = Path(skimage.__file__).parent / "data"
    calib, val = work / "calib", work / "val"
    calib.mkdir()
    val.mkdir()
    for name in CALIB:
        shutil.copy(data / name, calib / name)
    for name in VAL:
        shutil.copy(data / name, val / name)
    shutil.copy(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg", val / "grace_hopper.jpg")
    return calib, val


def _measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {err.strip().splitlines()[-1:]}")
    return wall, usage.ru_maxrss / 1024


def _median_runs(cmd: list[str], repeats: int, cleanup: Path) -> dict[str, float]:
    walls, rss = [], []
    for _ in range(repeats):
        shutil.rmtree(cleanup, ignore_errors=True)
        cleanup.unlink(missing_ok=True) if cleanup.is_file() else None
        wall, peak = _measure(cmd)
        walls.append(wall)
        rss.append(peak)
    return {"wall_s": round(statistics.median(walls), 2), "peak_rss_mb": round(max(rss), 1)}


def run(ctx: Context) -> dict[str, Any]:
    work = ctx.out / "bench_build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    repeats = 1 if ctx.quick else 3
    models = _models(work)
    edge = [sys.executable, "-m", "edge", "build"]
    result: dict[str, Any] = {"repeats": repeats, "target": "rtx-ada (sm 8.9, TensorRT-RTX AOT)", "models": {}}
    for name, path in models.items():
        inp, lo, opt, hi = MODELS[name]
        shapes = ["--min-shapes", f"{inp}:{lo}", "--opt-shapes", f"{inp}:{opt}", "--max-shapes", f"{inp}:{hi}"]
        extra = RETINA_SPEC if name == "retinaface" else []
        row: dict[str, Any] = {}
        ctx.log(f"{name}: bare TensorRT-RTX API build")
        plan = work / f"{name}.plan"
        baseline_cmd = [sys.executable, "-c", BASELINE, str(path), str(plan), inp, lo, opt, hi]
        row["baseline"] = _median_runs(baseline_cmd, repeats, plan)
        for key, flags in (
            ("kit_fp32", ["--precision", "fp32"]),
            ("kit_fp32_no_simplify", ["--precision", "fp32", "--no-simplify"]),
            ("kit_fp16", ["--precision", "fp16"]),
        ):
            ctx.log(f"{name}: edge build {' '.join(flags)}")
            out = work / f"{name}-{key}.bundle"
            cmd = [*edge, str(path), "-o", str(out), "--target", "rtx-ada", *flags, *shapes, *extra]
            row[key] = _median_runs(cmd, repeats, out)
        row["ratio_wall_fp32"] = round(row["kit_fp32"]["wall_s"] / row["baseline"]["wall_s"], 2)
        row["ratio_rss_fp32"] = round(row["kit_fp32"]["peak_rss_mb"] / row["baseline"]["peak_rss_mb"], 2)
        row["ratio_wall_fp32_no_simplify"] = round(row["kit_fp32_no_simplify"]["wall_s"] / row["baseline"]["wall_s"], 2)
        row["ratio_rss_fp32_no_simplify"] = round(
            row["kit_fp32_no_simplify"]["peak_rss_mb"] / row["baseline"]["peak_rss_mb"], 2
        )
        row["ratio_wall_fp16"] = round(row["kit_fp16"]["wall_s"] / row["baseline"]["wall_s"], 2)
        row["goal_ratio_wall"] = 1.5
        result["models"][name] = row
    ctx.log("retinaface: int8 for cpu, calibrated on 6 photos, checked on 4 others")
    calib, val = _photos(work)
    out = work / "retinaface-int8.bundle"
    cmd = [*edge, str(models["retinaface"]), "-o", str(out), "--target", "cpu", "--precision", "int8"]
    cmd += ["--calib", str(calib), "--val", str(val), "--size", "640x640", *RETINA_SPEC]
    wall, rss = _measure(cmd)
    accuracy = json.loads((out / "manifest.json").read_text())["accuracy"]
    result["int8"] = {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(rss, 1),
        "val_images": accuracy["samples"],
        "metric": accuracy["metric"],
        "score": accuracy["score"],
        "boxes": accuracy.get("boxes"),
        "cosine": {k: v["cosine"] for k, v in accuracy["outputs"].items()},
    }
    return result


def report(result: dict[str, Any]) -> str:
    lines = [
        f"Target {result['target']}; median of {result['repeats']} run(s), each a fresh process.",
        "",
        "| model | bare TRT-RTX build | edge build fp32 (ratio, goal <= 1.5) | fp32 --no-simplify | fp16 "
        "| peak RSS: bare / fp32 / fp32 --no-simplify |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["models"].items():
        b, k32, kns, k16 = row["baseline"], row["kit_fp32"], row["kit_fp32_no_simplify"], row["kit_fp16"]
        lines.append(
            f"| {name} | {b['wall_s']} s | {k32['wall_s']} s ({row['ratio_wall_fp32']}x) | {kns['wall_s']} s "
            f"({row['ratio_wall_fp32_no_simplify']}x) | {k16['wall_s']} s ({row['ratio_wall_fp16']}x) "
            f"| {b['peak_rss_mb']:.0f} / {k32['peak_rss_mb']:.0f} ({row['ratio_rss_fp32']}x) / "
            f"{kns['peak_rss_mb']:.0f} MB ({row['ratio_rss_fp32_no_simplify']}x) |"
        )
    i8 = result["int8"]
    cos = ", ".join(f"{k} {v:.4f}" for k, v in i8["cosine"].items())
    boxes = i8.get("boxes") or {}
    lines += [
        "",
        f"RetinaFace INT8 (cpu, entropy calibration on 6 photos) vs FP32 on {i8['val_images']} other photos: "
        f"{i8['metric']} {i8['score']:.4f} ({boxes.get('matched')}/{boxes.get('reference')} reference faces found, "
        f"{boxes.get('extra')} extra); output cosine {cos}; build {i8['wall_s']} s, {i8['peak_rss_mb']:.0f} MB.",
    ]
    return "\n".join(lines)
