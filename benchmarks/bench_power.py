"""Desktop power saving: fps, watts and fps/W of one bundle in ``max``, ``balanced`` and ``eco`` (NVML).

The same benchmark as ``edge bench --power eco,balanced`` (:mod:`edge.power.bench`), ``max`` being the
baseline measured in the same run. It changes the GPUs' power limits for its duration (root needed)
and puts them back; where NVML does not start (no NVIDIA driver, a Jetson) it is skipped with the reason.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def run(ctx: Any) -> dict[str, Any]:
    from edge.errors import PowerError
    from edge.power.bench import compare_power
    from edge.power.nvml import NvmlPower
    from edge.runtime import load
    from edge.runtime.perf import benchmark
    from tests.runtime.bundles import build_retinaface

    try:
        NvmlPower().close()
    except PowerError as exc:
        return {"skipped": f"no NVML here: {exc}"}
    iterations = 30 if ctx.quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_retinaface(Path(tmp) / "retinaface.bundle")
        with load(bundle, warmup=3) as model:
            ctx.log(f"{model.backend_name}: {iterations} iterations per power mode")
            report = compare_power(
                "balanced,eco", lambda: benchmark(model, batch=1, iterations=iterations, warmup=5), say=ctx.log
            )
    if "skipped" in report:
        return report
    runs = {r["mode"]: r for r in report["runs"]}
    out: dict[str, Any] = {
        "gpus": report["gpus"],
        "runs": [{k: v for k, v in r.items() if k != "benchmark"} for r in report["runs"]],
    }
    base = runs["max"]
    for mode in ("balanced", "eco"):
        r = runs.get(mode)
        if r and base["fps"] and base["fps_per_watt"] and r["fps_per_watt"]:
            out[f"ratio_fps_{mode}_vs_max"] = r["fps"] / base["fps"]
            out[f"ratio_fps_per_watt_{mode}_vs_max"] = r["fps_per_watt"] / base["fps_per_watt"]
    out["goal"] = "eco and balanced: fps/W above max (ratio_fps_per_watt_* > 1)"
    return out


def report(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"Skipped: {result['skipped']}\n"
    lines = ["| mode | limit W | fps | W | fps/W |", "|---|---|---|---|---|"]
    for r in result["runs"]:
        watts = "n/a" if r["watts"] is None else f"{r['watts']:.1f}"
        per_w = "n/a" if r["fps_per_watt"] is None else f"{r['fps_per_watt']:.3f}"
        lines.append(f"| {r['mode']} | {r['limit_w']:g} | {r['fps']:.1f} | {watts} | {per_w} |")
    ratios = [f"- {k}: {v:.2f}" for k, v in result.items() if k.startswith("ratio_")]
    return "\n".join([f"GPUs: {', '.join(result['gpus'])}", "", *lines, "", *ratios, f"- goal: {result['goal']}", ""])
