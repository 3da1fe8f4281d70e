"""Simplifier choice: onnxslim (the kit's) against onnxsim (the baseline) on the same models, same run.

For each model: nodes before/after, seconds to simplify (best of ``repeats``) and the largest output
difference from the original through ONNX Runtime (relative to the output's peak), on a real photo for
RetinaFace and seeded noise for the onnx package's light models. Both tools are given the same model
after ``builders.onnx_load.load_onnx`` (and, for "retinaface 480x640", ``builders.shapes.fix_shapes``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = (
    "retinaface",
    "retinaface 480x640",
    "light_resnet50",
    "light_squeezenet",
    "light_inception_v1",
    "light_densenet121",
)


def _models(tmp: Path) -> dict[str, tuple[onnx.ModelProto, dict[str, np.ndarray]]]:
    import cv2
    import skimage.data
    from retinaface.weights import WEIGHTS

    from builders.onnx_load import describe_io, load_onnx
    from builders.shapes import fix_shapes
    from edge.preprocess import preprocess
    from edge.spec import PreprocessSpec

    (tmp / "retinaface.onnx").write_bytes(WEIGHTS)
    retina = load_onnx(tmp / "retinaface.onnx")
    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    spec = PreprocessSpec(input="input", color="bgr", scale=1.0, mean=(104, 117, 127), size=(480, 640))
    x, _ = preprocess(photo, spec, (1, 3, 480, 640))
    out = {
        "retinaface": (retina, {"input": x}),
        "retinaface 480x640": (fix_shapes(retina, {"input": (1, 3, 480, 640)}), {"input": x}),
    }
    rng = np.random.default_rng(0)
    for name in MODELS[2:]:
        model = load_onnx(LIGHT / f"{name}.onnx")
        spec_in = describe_io(model)[0][0]
        out[name] = (model, {spec_in.name: rng.standard_normal(spec_in.shape).astype(np.float32)})
    return out


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    from builders.shapes import ort_session

    return list(ort_session(model).run(None, feeds))


def _tools() -> dict[str, Any]:
    import onnxsim
    import onnxslim

    def slim(m: onnx.ModelProto) -> onnx.ModelProto:
        result: onnx.ModelProto = onnxslim.slim(m)
        return result

    def sim(m: onnx.ModelProto) -> onnx.ModelProto:
        result, _ok = onnxsim.simplify(m)
        return result

    return {f"onnxslim {onnxslim.__version__}": slim, f"onnxsim {onnxsim.__version__}": sim}


def run(ctx: Any) -> dict[str, Any]:
    repeats = 1 if ctx.quick else 3
    tmp = Path(ctx.out) / "simplify"
    tmp.mkdir(parents=True, exist_ok=True)
    tools = _tools()
    rows = []
    for name, (model, feeds) in _models(tmp).items():
        ref = _run(model, feeds)
        row: dict[str, Any] = {"model": name, "nodes": len(model.graph.node)}
        for tool, fn in tools.items():
            best = float("inf")
            try:
                for _ in range(repeats):
                    copy = onnx.ModelProto()
                    copy.CopyFrom(model)
                    start = time.perf_counter()
                    out = fn(copy)
                    best = min(best, time.perf_counter() - start)
                got = _run(out, feeds)
                err = max(float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)) for a, b in zip(ref, got))
                row[tool] = {
                    "nodes": len(out.graph.node),
                    "seconds": round(best, 3),
                    "max_rel_diff": float(f"{err:.3g}"),
                }
            except Exception as exc:  # a benchmark records a tool's failure as a result
                row[tool] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        ctx.log(f"{name}: " + ", ".join(f"{t} {row[t].get('nodes', 'failed')}" for t in tools))
        rows.append(row)
    slim, sim = list(tools)
    ok = [r for r in rows if "nodes" in r[slim] and "nodes" in r[sim]]
    return {
        "tools": [slim, sim],
        "rows": rows,
        "ratio_nodes_slim_over_sim": round(sum(r[slim]["nodes"] for r in ok) / sum(r[sim]["nodes"] for r in ok), 3),
        "ratio_seconds_slim_over_sim": round(
            sum(r[slim]["seconds"] for r in ok) / max(1e-9, sum(r[sim]["seconds"] for r in ok)), 2
        ),
        "goal": "onnxslim leaves no more nodes than onnxsim (ratio_nodes <= 1) and outputs agree (max_rel_diff < 1e-4)",
    }


def report(result: dict[str, Any]) -> str:
    slim, sim = result["tools"]
    lines = [
        f"| model | nodes | {slim} nodes | s | max rel diff | {sim} nodes | s | max rel diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        cells = [r["model"], str(r["nodes"])]
        for tool in (slim, sim):
            t = r[tool]
            cells += (
                [str(t["nodes"]), str(t["seconds"]), str(t["max_rel_diff"])] if "nodes" in t else [t["error"], "", ""]
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Nodes left, onnxslim / onnxsim: **{result['ratio_nodes_slim_over_sim']}** (goal <= 1); "
        f"time, onnxslim / onnxsim: {result['ratio_seconds_slim_over_sim']}x.",
    ]
    return "\n".join(lines)
