"""``edge build`` vs the bare TensorRT-RTX API build of the same ONNX, and INT8-vs-FP32 agreement.

For the onnx package's light ResNet-50 (dynamic batch 1..8) and RetinaFace (640x640, batch 1..4), in
the same run, each command a fresh ``python`` process timed from interpreter start to exit (imports,
ONNX loading and preparation included on both sides):

- **baseline**: a minimal script doing only what a bare TensorRT-RTX build needs (import tensorrt_rtx,
  Builder, strongly typed network, OnnxParser on the same ONNX file, one profile, compute capability
  8.9, build, write the plan);
- **kit**: ``edge build MODEL -o OUT --target rtx-ada --precision fp32`` (CLI start, load, checker,
  shape inference, the tidy pass, shape checks, TensorRT-RTX build, bundle with hashes and manifest);
  ``--simplify`` adds onnxslim (its sympy import, its ONNX Runtime folding), which fp32 builds leave to
  TensorRT by default; ``--precision fp16`` (onnxslim and the FP16 conversion) is for information.

The commands run in interleaved rounds (baseline, kit, kit --simplify, kit fp16, then again), after
one untimed warm-up round, so that load from other processes on a shared machine hits both sides
alike. Bytecode is cached (``PYTHONPYCACHEPREFIX`` in the work folder; the team's environment sets
PYTHONDONTWRITEBYTECODE, which would recompile the kit's modules in every run), as in an installed
package. Per command: median wall time, median CPU time (user + system, less sensitive to that load) and
the largest peak RSS (``wait4``). Goal: kit fp32 wall time <= 1.5x the baseline's.

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
    """The onnx package's light ResNet-50 with a dynamic batch axis, as the builder tests use it."""
    from tests.models import light_model_dynamic_batch

    return light_model_dynamic_batch("resnet50")


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


GOAL_RATIO_WALL = 1.5
VARIANTS = (
    ("kit_fp32", ["--precision", "fp32"]),
    ("kit_fp32_simplify", ["--precision", "fp32", "--simplify"]),
    ("kit_fp16", ["--precision", "fp16"]),
)


def _env(pycache: Path) -> dict[str, str]:
    """Child environment: bytecode cached under ``pycache`` (outside the source tree), as an installed
    package has it, for both sides alike."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def _measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read().decode() if proc.stderr else ""  # drained while it runs: never blocks on a full pipe
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {err.strip().splitlines()[-1:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _clean(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _rounds(
    commands: dict[str, tuple[list[str], Path]], repeats: int, warmup: bool, env: dict[str, str] | None
) -> dict[str, dict[str, float]]:
    """Run every command once per round, ``repeats`` rounds (after an untimed one when ``warmup``)."""
    samples: dict[str, list[tuple[float, float, float]]] = {key: [] for key in commands}
    for index in range(repeats + int(warmup)):
        for key, (cmd, output) in commands.items():
            _clean(output)
            sample = _measure(cmd, env)
            if index >= int(warmup):
                samples[key].append(sample)
    return {
        key: {
            "wall_s": round(statistics.median(s[0] for s in runs), 2),
            "cpu_s": round(statistics.median(s[1] for s in runs), 2),
            "peak_rss_mb": round(max(s[2] for s in runs), 1),
        }
        for key, runs in samples.items()
    }


def _ratios(row: dict[str, Any]) -> None:
    base = row["baseline"]
    for key, _ in VARIANTS:
        suffix = key[len("kit_") :]
        for metric, name in (("wall_s", "wall"), ("cpu_s", "cpu"), ("peak_rss_mb", "rss")):
            row[f"ratio_{name}_{suffix}"] = round(row[key][metric] / base[metric], 2) if base[metric] else None
    row["goal_ratio_wall"] = GOAL_RATIO_WALL
    row["meets_goal"] = row["ratio_wall_fp32"] is not None and row["ratio_wall_fp32"] <= GOAL_RATIO_WALL


def run(ctx: Context) -> dict[str, Any]:
    work = ctx.out / "bench_build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    repeats = 1 if ctx.quick else 5
    models = _models(work)
    env = _env(work / "pycache")
    edge = [sys.executable, "-m", "edge", "build"]
    result: dict[str, Any] = {
        "repeats": repeats,
        "target": "rtx-ada (sm 8.9, TensorRT-RTX AOT)",
        "cpus": os.cpu_count(),
        "load_before": round(os.getloadavg()[0], 2),
        "models": {},
    }
    for number, (name, path) in enumerate(models.items()):
        inp, lo, opt, hi = MODELS[name]
        shapes = ["--min-shapes", f"{inp}:{lo}", "--opt-shapes", f"{inp}:{opt}", "--max-shapes", f"{inp}:{hi}"]
        extra = RETINA_SPEC if name == "retinaface" else []
        plan = work / f"{name}.plan"
        commands = {"baseline": ([sys.executable, "-c", BASELINE, str(path), str(plan), inp, lo, opt, hi], plan)}
        for key, flags in VARIANTS:
            out = work / f"{name}-{key}.bundle"
            commands[key] = ([*edge, str(path), "-o", str(out), "--target", "rtx-ada", *flags, *shapes, *extra], out)
        ctx.log(f"{name}: bare TensorRT-RTX API build and edge build fp32 / fp32 --simplify / fp16, {repeats} round(s)")
        row: dict[str, Any] = dict(_rounds(commands, repeats, number == 0, env))
        row["model_onnx_mb"] = round((work / f"{name}-kit_fp32.bundle" / "model.onnx").stat().st_size / 1e6, 1)
        _ratios(row)
        result["models"][name] = row
    ctx.log("retinaface: int8 for cpu, calibrated on 6 photos, checked on 4 others")
    calib, val = _photos(work)
    out = work / "retinaface-int8.bundle"
    cmd = [*edge, str(models["retinaface"]), "-o", str(out), "--target", "cpu", "--precision", "int8"]
    cmd += ["--calib", str(calib), "--val", str(val), "--size", "640x640", *RETINA_SPEC]
    wall, _, rss = _measure(cmd, env)
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


def _cell(row: dict[str, Any], key: str, suffix: str) -> str:
    m = row[key]
    return (
        f"{m['wall_s']} s ({row[f'ratio_wall_{suffix}']}x); CPU {m['cpu_s']} s ({row[f'ratio_cpu_{suffix}']}x); "
        f"{m['peak_rss_mb']:.0f} MB ({row[f'ratio_rss_{suffix}']}x)"
    )


def report(result: dict[str, Any]) -> str:
    lines = [
        f"Target {result['target']}; each command a fresh process timed from Python start (imports and ONNX "
        f"preparation included on both sides); median of {result['repeats']} interleaved round(s); "
        f"{result.get('cpus')} CPUs, load average {result.get('load_before')} at the start. "
        f"Ratios are against the bare build; goal: edge build fp32 wall time <= {GOAL_RATIO_WALL}x.",
        "",
        "| model | bare TRT-RTX build: wall; CPU; peak RSS | edge build fp32 | goal met | fp32 --simplify (onnxslim) "
        "| fp16 (information) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["models"].items():
        b = row["baseline"]
        met = "yes" if row.get("meets_goal") else "no"
        lines.append(
            f"| {name} | {b['wall_s']} s; {b['cpu_s']} s; {b['peak_rss_mb']:.0f} MB | {_cell(row, 'kit_fp32', 'fp32')} "
            f"| {met} ({row['ratio_wall_fp32']}x vs {GOAL_RATIO_WALL}x) "
            f"| {_cell(row, 'kit_fp32_simplify', 'fp32_simplify')} | {_cell(row, 'kit_fp16', 'fp16')} |"
        )
    sizes = ", ".join(f"{n} {r.get('model_onnx_mb')} MB" for n, r in result["models"].items())
    lines += ["", f"Bundle model.onnx (fp32, the tidy pass only): {sizes}."]
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
