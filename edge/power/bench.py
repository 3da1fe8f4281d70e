"""fps, watts and fps per watt of one benchmark in several desktop power modes, side by side (``edge bench --power``).

Each mode's run sets the NVML power limit (:class:`~edge.power.nvml.NvmlPower`), then measures: fps is
the benchmark's own throughput, watts are the GPUs' energy counter difference
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules, Volta and newer) over the run's wall time, or
the power reading after the run where the counter is missing. The limits found at the start are put
back at the end, whatever happens. Without NVML the comparison is skipped with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from edge.errors import PowerError

log = logging.getLogger(__name__)


def modes_to_compare(wanted: str) -> list[str]:
    """``max`` first (the baseline), then the modes asked for (comma-separated)."""
    modes = ["max"]
    for name in (m.strip() for m in wanted.split(",")):
        if name and name.lower() not in (m.lower() for m in modes):
            modes.append(name)
    return modes


def compare_power(
    wanted: str,
    measure: Callable[[], dict[str, Any]],
    *,
    gpus: Sequence[str] | None = None,
    say: Callable[[str], None] = lambda line: None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run ``measure`` (a benchmark returning ``throughput_qps``) once per mode; ``{"runs": [...]}`` or ``{"skipped": why}``."""
    from edge.power.nvml import NvmlPower

    try:
        power = NvmlPower(gpus)
    except PowerError as exc:
        return {"skipped": f"no power comparison: {exc}"}
    runs: list[dict[str, Any]] = []
    with power:
        start = {g.uuid: g.limit_w for g in power.gpus()}
        names = [f"GPU {g.index} {g.name}" for g in power.gpus()]
        try:
            for mode in modes_to_compare(wanted):
                changed = power.set_limit(mode)
                limit = sum(w for _, w in changed)
                say(f"power mode {mode}: limit {limit:g}W")
                watts: float | None
                e0, t0 = power.energy_mj(), clock()
                result = measure()
                e1, t1 = power.energy_mj(), clock()
                if e0 is not None and e1 is not None and t1 > t0:
                    watts, how = (e1 - e0) / 1000.0 / (t1 - t0), "energy counter"
                else:
                    watts, how = power.power_w(), "power reading"
                fps = float(result["throughput_qps"])
                runs.append(
                    {
                        "mode": mode,
                        "limit_w": limit,
                        "fps": fps,
                        "watts": watts,
                        "fps_per_watt": fps / watts if watts else None,
                        "watts_from": how,
                        "benchmark": result,
                    }
                )
        finally:
            power.set_limits_w(start)
    return {"gpus": names, "runs": runs}


def format_comparison(report: dict[str, Any]) -> str:
    """The side-by-side table, with each mode's fps and fps/W relative to ``max``."""
    if "skipped" in report:
        return f"power: {report['skipped']}"
    runs = report["runs"]
    lines = [f"{'power':<10} {'limit':>8} {'fps':>10} {'W':>8} {'fps/W':>8}  vs max"]
    base = runs[0] if runs else None
    for run in runs:
        watts = "n/a" if run["watts"] is None else f"{run['watts']:.1f}"
        per_w = "n/a" if run["fps_per_watt"] is None else f"{run['fps_per_watt']:.2f}"
        rel = ""
        if base is not None and run is not base and base["fps"]:
            rel = f"fps {100 * run['fps'] / base['fps']:.0f} %"
            if run["fps_per_watt"] and base["fps_per_watt"]:
                rel += f", fps/W {100 * run['fps_per_watt'] / base['fps_per_watt']:.0f} %"
        lines.append(
            f"{run['mode']:<10} {run['limit_w']:>7g}W {run['fps']:>10.1f} {watts:>8} {per_w:>8}  {rel}".rstrip()
        )
    return "\n".join(lines)
