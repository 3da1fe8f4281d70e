"""Pre- and post-processing against OpenCV doing the same job, measured side by side in one run.

- preprocess: a 1920x1080 BGR frame -> letterboxed 640x640 RGB float32 NCHW scaled 1/255 (YOLO input), by
  ``edge.preprocess.preprocess`` into a preallocated buffer vs ``cv2.resize`` + ``cv2.copyMakeBorder`` +
  ``cv2.dnn.blobFromImage`` and vs ``cv2.dnn.blobFromImageWithParams`` (letterbox mode); tensors must be equal.
- NMS: 1,000 and 10,000 boxes over 80 classes, ``edge.decoders.nms`` vs ``cv2.dnn.NMSBoxesBatched`` (boxes
  already in its xywh form), uniformly scattered boxes and YOLO-like clusters; kept sets must be equal.
  Class-agnostic NMS vs ``cv2.dnn.NMSBoxes`` is reported too (no goal).

Goal: every ratio (ours / OpenCV time, medians of runs taking turns) <= 1.0.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.decoders import nms
from edge.preprocess import preprocess
from edge.spec import PreprocessSpec

GOAL = 1.0
DNN: Any = cv2.dnn  # the cv2 stubs want lists where the functions take numpy arrays


def _median_ms(fns: dict[str, Callable[[], object]], repeats: int, block: int = 1) -> dict[str, float]:
    """Median wall time per call of each function. The functions take turns, ``block`` calls each, so that
    load changes on the machine hit all of them alike while each still runs in its own steady state
    (its buffers allocated and cached as in a loop over frames)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():
        f()  # warm up
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(block):
                f()
            times[k].append((time.perf_counter() - t0) / block)
    return {k: round(float(np.median(v)) * 1e3, 4) for k, v in times.items()}


def _frame() -> np.ndarray:
    """A 1920x1080 BGR frame: scikit-image's astronaut tiled and resized (content does not change timing)."""
    try:
        from skimage import data

        photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    except ImportError:
        photo = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    return cv2.resize(np.hstack([photo, photo[:, ::-1]]), (1920, 1080), interpolation=cv2.INTER_AREA)


def bench_preprocess(ctx: Any) -> dict[str, Any]:
    frame = _frame()
    spec = PreprocessSpec(input="images", size=(640, 640))  # letterbox, rgb, 1/255, nchw, float32, pad 114
    buffer = np.empty((1, 3, 640, 640), np.float32)
    params = DNN.Image2BlobParams()
    params.scalefactor = (1 / 255, 1 / 255, 1 / 255, 0.0)
    params.size = (640, 640)
    params.swapRB = True
    params.ddepth = cv2.CV_32F
    params.datalayout = cv2.DNN_LAYOUT_NCHW
    params.paddingmode = DNN.DNN_PMODE_LETTERBOX
    params.borderValue = (114, 114, 114, 0)

    def manual() -> np.ndarray:
        resized = cv2.resize(frame, (640, 360), interpolation=cv2.INTER_LINEAR)
        boxed = cv2.copyMakeBorder(resized, 140, 140, 0, 0, cv2.BORDER_CONSTANT, value=(114, 114, 114))
        return DNN.blobFromImage(boxed, 1 / 255, (640, 640), swapRB=True)

    fns: dict[str, Callable[[], object]] = {
        "edge_preallocated": lambda: preprocess(frame, spec, (1, 3, 640, 640), out=buffer),
        "edge_new_buffer": lambda: preprocess(frame, spec, (1, 3, 640, 640)),
        "cv2_resize_border_blob": manual,
        "cv2_blob_with_params": lambda: DNN.blobFromImageWithParams(frame, params),
    }
    ours = preprocess(frame, spec, (1, 3, 640, 640))[0]
    equal = bool(np.array_equal(ours, manual())) and bool(
        np.array_equal(ours, DNN.blobFromImageWithParams(frame, params))
    )
    ms = _median_ms(fns, 5 if ctx.quick else 40, block=10)
    ctx.log(f"preprocess 1920x1080 -> 640x640, 10 calls in a row: {ms}")
    cold = _median_ms(fns, 20 if ctx.quick else 200, block=1)  # one call each in turn: caches shared, colder
    ctx.log(f"preprocess 1920x1080 -> 640x640, one call each in turn: {cold}")
    return {
        "ms": ms,
        "same_tensor": equal,
        "ratio_vs_blobFromImage": round(ms["edge_preallocated"] / ms["cv2_resize_border_blob"], 3),
        "ratio_vs_blobFromImageWithParams": round(ms["edge_preallocated"] / ms["cv2_blob_with_params"], 3),
        "ratio_new_buffer_vs_blobFromImage": round(ms["edge_new_buffer"] / ms["cv2_resize_border_blob"], 3),
        "ms_alternating": cold,
        "ratio_alternating_vs_blobFromImage": round(cold["edge_preallocated"] / cold["cv2_resize_border_blob"], 3),
        "goal": GOAL,
    }


def _boxes(n: int, layout: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` boxes on a 640x640 image, 80 classes: scattered uniformly, or jittered around 40 objects."""
    rng = np.random.default_rng(seed)
    if layout == "uniform":
        xy = rng.uniform(0, 600, (n, 2))
        wh = rng.uniform(8, 120, (n, 2))
        classes = rng.integers(0, 80, n)
    else:
        centres = rng.uniform(50, 590, (40, 2))
        sizes = rng.uniform(20, 200, (40, 2))
        obj = rng.integers(0, 40, n)
        wh = sizes[obj] * rng.uniform(0.8, 1.2, (n, 2))
        xy = centres[obj] + rng.normal(0, 6, (n, 2)) - wh / 2
        classes = np.where(rng.uniform(size=n) < 0.8, obj * 2 % 80, rng.integers(0, 80, n))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    return boxes, rng.uniform(0.05, 1.0, n).astype(np.float32), classes


def bench_nms(ctx: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in (1000, 10000):
        for layout in ("uniform", "clustered"):
            key = f"{n}_{layout}"
            out[key] = _nms_case(n, layout, ctx.quick)
            ctx.log(f"nms {key}: {out[key]['ms']} kept {out[key]['kept']} same={out[key]['same_kept']}")
    return out


def _nms_case(n: int, layout: str, quick: bool) -> dict[str, Any]:
    boxes, scores, classes = _boxes(n, layout, seed=n)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    kept = nms(boxes, scores, classes, 0.45)
    want = np.asarray(DNN.NMSBoxesBatched(xywh, scores, classes, 0.0, 0.45)).ravel()
    kept_a = nms(boxes, scores, classes, 0.45, agnostic=True)
    want_a = np.asarray(DNN.NMSBoxes(xywh, scores, 0.0, 0.45)).ravel()
    repeats = (5 if quick else 30) if n <= 1000 else (2 if quick else 7)
    ms = _median_ms(
        {
            "edge": lambda: nms(boxes, scores, classes, 0.45),
            "cv2_NMSBoxesBatched": lambda: DNN.NMSBoxesBatched(xywh, scores, classes, 0.0, 0.45),
            "edge_agnostic": lambda: nms(boxes, scores, classes, 0.45, agnostic=True),
            "cv2_NMSBoxes": lambda: DNN.NMSBoxes(xywh, scores, 0.0, 0.45),
        },
        repeats,
    )
    return {
        "boxes": n,
        "classes": 80,
        "layout": layout,
        "kept": len(kept),
        "kept_agnostic": len(kept_a),
        "same_kept": set(kept.tolist()) == set(want.tolist()),
        "same_kept_agnostic": set(kept_a.tolist()) == set(want_a.tolist()),
        "ms": ms,
        "ratio": round(ms["edge"] / ms["cv2_NMSBoxesBatched"], 3),
        "ratio_agnostic": round(ms["edge_agnostic"] / ms["cv2_NMSBoxes"], 3),
        "goal": GOAL,
    }


def run(ctx: Any) -> dict[str, Any]:
    return {"preprocess": bench_preprocess(ctx), "nms": bench_nms(ctx), "opencv": cv2.__version__}


def report(result: dict[str, Any]) -> str:
    pre = result["preprocess"]
    ms = pre["ms"]
    lines = [
        f"OpenCV {result.get('opencv', '?')}. Ratio = edge time / OpenCV time (medians of runs taking turns); goal <= {GOAL}.",
        "",
        "| preprocess 1920x1080 -> 640x640 letterbox, 1/255, RGB, NCHW | ms | ratio | same tensor |",
        "|---|---|---|---|",
        f"| edge `preprocess` (preallocated buffer) | {ms['edge_preallocated']} | | {pre['same_tensor']} |",
        f"| edge `preprocess` (new buffer) | {ms['edge_new_buffer']} | {pre['ratio_new_buffer_vs_blobFromImage']} vs blobFromImage | |",
        f"| cv2 resize + copyMakeBorder + `blobFromImage` | {ms['cv2_resize_border_blob']} | **{pre['ratio_vs_blobFromImage']}** | |",
        f"| cv2 `blobFromImageWithParams` (letterbox) | {ms['cv2_blob_with_params']} | **{pre['ratio_vs_blobFromImageWithParams']}** | |",
        "",
        "Times above: 10 calls in a row per turn (a frame loop's steady state). Alternating single calls (caches "
        f"shared, colder): edge {pre['ms_alternating']['edge_preallocated']} ms vs resize + copyMakeBorder + "
        f"blobFromImage {pre['ms_alternating']['cv2_resize_border_blob']} ms, ratio "
        f"**{pre['ratio_alternating_vs_blobFromImage']}**.",
        "",
        "| NMS, 80 classes | edge ms | cv2 NMSBoxesBatched ms | ratio | same kept | kept | agnostic edge / NMSBoxes ms | agnostic ratio | same |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["nms"].values():
        m = r["ms"]
        lines.append(
            f"| {r['boxes']} {r['layout']} | {m['edge']} | {m['cv2_NMSBoxesBatched']} | **{r['ratio']}** | {r['same_kept']} "
            f"| {r['kept']} | {m['edge_agnostic']} / {m['cv2_NMSBoxes']} | {r['ratio_agnostic']} | {r['same_kept_agnostic']} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pre = result["preprocess"]
    names = ["preprocess vs\nresize+border+blob", "preprocess vs\nblobWithParams"]
    ratios = [pre["ratio_vs_blobFromImage"], pre["ratio_vs_blobFromImageWithParams"]]
    for r in result["nms"].values():
        names.append(f"NMS {r['boxes']}\n{r['layout']}")
        ratios.append(r["ratio"])
    fig, ax = plt.subplots(figsize=(9, 3.6))
    bars = ax.bar(names, ratios, color=["tab:green" if v <= GOAL else "tab:red" for v in ratios])
    ax.axhline(GOAL, color="black", linestyle="--", linewidth=1, label="goal (same time as OpenCV)")
    ax.bar_label(bars, [f"{v:.2f}" for v in ratios], fontsize=8)
    ax.set_ylabel("edge time / OpenCV time")
    ax.set_title("edge pre/post-processing vs OpenCV (lower is faster)")
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
