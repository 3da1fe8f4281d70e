#!/usr/bin/env python3
"""The checks behind ``scripts/gpu_check.sh``: run them within a time budget and write the report.

    python scripts/gpu_check.py [--out benchmarks/results] [--budget 290]

Checks, in order, each with a time limit taken from what is left of the budget:

1. ``edge info``;
2. ``edge build`` of the committed YOLOv8n export (dynamic batch and size) for this machine's target and
   the cpu target (``--target auto --target cpu --skip-unavailable``): a real bundle;
3. ``edge doctor`` on it: every artifact that runs here against ONNX Runtime on the CPU;
4. ``pytest tests/gpu -m gpu`` (timings the tests record land in the report);
5. a telemetry read: NVML (power draw and limits, clocks, temperature, utilisation, memory) on discrete
   GPUs, one ``tegrastats`` line on a Jetson.

Everything here READS the GPU's settings; nothing sets a power limit, a clock or a power mode.
The report is ``<out>/gpu-<gpu-name>.md``; the exit code is 1 when a check failed, 2 without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "data" / "models" / "yolov8n-detect-dyn.onnx"
PROFILE = [
    "--min-shapes",
    "images:1x3x128x128",
    "--opt-shapes",
    "images:1x3x256x256",
    "--max-shapes",
    "images:4x3x320x320",
]
DISTRIBUTIONS = (
    "edge-kit", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "opencv-python-headless", "tensorrt",
    "tensorrt_cu12", "tensorrt_cu13", "tensorrt-rtx-cu12", "tensorrt-rtx-cu13", "cuda-python", "cuda-bindings",
    "cupy-cuda12x", "cupy-cuda13x", "torch", "nvidia-ml-py", "pytest",
)  # fmt: skip
# NVML queries the telemetry read makes: every one is a getter (nothing here calls an nvmlDeviceSet* function).
NVML_READS = {
    "power draw W": ("nvmlDeviceGetPowerUsage", 1e-3),
    "power limit W": ("nvmlDeviceGetEnforcedPowerLimit", 1e-3),
    "default power limit W": ("nvmlDeviceGetPowerManagementDefaultLimit", 1e-3),
    "temperature C": ("nvmlDeviceGetTemperature", None),
    "SM clock MHz": ("nvmlDeviceGetClockInfo", "sm"),
    "max SM clock MHz": ("nvmlDeviceGetMaxClockInfo", "sm"),
    "memory clock MHz": ("nvmlDeviceGetClockInfo", "mem"),
    "GPU utilisation %": ("nvmlDeviceGetUtilizationRates", "gpu"),
    "memory used MiB": ("nvmlDeviceGetMemoryInfo", "used"),
    "memory total MiB": ("nvmlDeviceGetMemoryInfo", "total"),
    "performance state": ("nvmlDeviceGetPerformanceState", None),
}


@dataclass
class Check:
    name: str
    verdict: str = "skipped"  # ok, failed, skipped
    seconds: float = 0.0
    detail: str = ""
    output: str = ""


@dataclass
class Report:
    gpu: str
    machine: str
    versions: dict[str, str] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    telemetry: list[dict[str, str]] = field(default_factory=list)
    pytest_summary: str = ""
    skipped_tests: list[str] = field(default_factory=list)
    started: str = ""
    total_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(c.verdict == "failed" for c in self.checks)


def slug(name: str) -> str:
    """``NVIDIA GeForce RTX 4090`` -> ``nvidia-geforce-rtx-4090`` (the report's file name)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-gpu"


def say(text: str) -> None:
    print(f"gpu_check: {text}", file=sys.stderr, flush=True)


def run_step(
    check: Check, argv: list[str], limit: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str] | None:
    """Run one command with a time limit, a progress line every 20 s, its output kept for the report."""
    if limit < 5:
        check.verdict, check.detail = "skipped", "no time left in the 5-minute budget"
        return None
    say(f"{check.name}: {' '.join(argv[1:4])} ... (limit {limit:.0f} s)")
    done = threading.Event()
    t0 = time.perf_counter()

    def heartbeat() -> None:
        while not done.wait(20):
            say(f"{check.name}: still running ({time.perf_counter() - t0:.0f} s)")

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit, env=env, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired as exc:
        check.verdict, check.detail = "failed", f"timed out after {limit:.0f} s"
        check.output = (
            (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else str(exc.stdout or "")
        )
        return None
    finally:
        done.set()
        check.seconds = time.perf_counter() - t0
    check.output = (proc.stdout + proc.stderr).strip()
    check.verdict = "ok" if proc.returncode == 0 else "failed"
    tail = [line for line in check.output.splitlines() if line.strip()][-1:] or [""]
    check.detail = f"exit {proc.returncode}" + (f": {tail[0][:200]}" if proc.returncode else "")
    say(f"{check.name}: {check.verdict} ({check.seconds:.1f} s)")
    return proc


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0], "os": f"{platform.system()} {platform.release()} {platform.machine()}"}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def machine_facts() -> tuple[str, str, dict[str, str]]:
    """GPU name, one line about the machine, and driver/CUDA/L4T versions (read with the kit's detection)."""
    import platforms

    m = platforms.detect()
    gpu = m.gpu_name or m.platform.name
    extra = {k: str(v) for k, v in (("driver", m.driver_version), ("CUDA", m.cuda_version), ("L4T", m.l4t_version),
                                    ("JetPack", m.jetpack_version)) if v}  # fmt: skip
    count = f", {m.gpu_count} GPUs" if m.gpu_count > 1 else ""
    return gpu, f"{m.platform.id} ({m.reason}){count}", extra


def nvml_telemetry() -> list[dict[str, str]]:
    """One row per GPU from NVML's getters; [] when NVML is not there (a Jetson, or no nvidia-ml-py)."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []
    rows = []
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(h)
            row = {"GPU": f"{index} {name.decode() if isinstance(name, bytes) else name}"}
            for label, (fn, arg) in NVML_READS.items():
                row[label] = _nvml_value(pynvml, h, fn, arg)
            rows.append(row)
    finally:
        pynvml.nvmlShutdown()
    return rows


def _nvml_value(pynvml: Any, handle: Any, fn: str, arg: Any) -> str:
    try:
        if fn == "nvmlDeviceGetTemperature":
            return str(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
        if fn in ("nvmlDeviceGetClockInfo", "nvmlDeviceGetMaxClockInfo"):
            clock = pynvml.NVML_CLOCK_SM if arg == "sm" else pynvml.NVML_CLOCK_MEM
            return str(getattr(pynvml, fn)(handle, clock))
        value = getattr(pynvml, fn)(handle)
        if fn == "nvmlDeviceGetUtilizationRates":
            return str(value.gpu)
        if fn == "nvmlDeviceGetMemoryInfo":
            return f"{getattr(value, arg) / 2**20:.0f}"
        if fn == "nvmlDeviceGetPerformanceState":
            return f"P{value}"
        return f"{value * arg:.1f}" if isinstance(arg, float) else str(value)
    except pynvml.NVMLError as exc:
        return f"n/a ({exc})"


SMI_TELEMETRY = (
    "index,name,power.draw,power.limit,power.default_limit,temperature.gpu,clocks.sm,clocks.max.sm,"
    "utilization.gpu,memory.used,memory.total,pstate"
)


def smi_telemetry() -> list[dict[str, str]]:
    """The same reads through ``nvidia-smi --query-gpu`` where nvidia-ml-py is not installed."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run(
            [exe, f"--query-gpu={SMI_TELEMETRY}", "--format=csv"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or len(lines) < 2:
        return []
    header = [h.strip() for h in lines[0].split(",")]
    return [dict(zip(header, (v.strip() for v in line.split(",")))) for line in lines[1:]]


def tegrastats_line(limit: float = 5.0) -> str | None:
    """One sample of ``tegrastats`` (a Jetson's own telemetry tool; reading only), or None without it."""
    exe = shutil.which("tegrastats")
    if exe is None:
        return None
    proc = subprocess.Popen([exe, "--interval", "500"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
    finally:
        proc.terminate()
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            proc.kill()
    return line or None


def parse_pytest(output: str) -> tuple[str, list[str]]:
    """pytest's final summary line and its ``SKIPPED [n] file:line: reason`` lines."""
    summary = next(
        (
            line.strip("= ").strip()
            for line in reversed(output.splitlines())
            if re.search(r"\d+ (passed|failed|skipped|error)", line)
        ),
        "",
    )
    skipped = [line.strip() for line in output.splitlines() if line.startswith("SKIPPED")]
    return summary, skipped


def render(report: Report) -> str:
    lines = [
        f"# GPU check: {report.gpu}",
        "",
        f"`scripts/gpu_check.sh` on {report.started}, {report.total_seconds:.0f} s in all. Result: "
        + ("**all checks passed**" if report.ok else "**a check FAILED**")
        + ". The check only reads GPU settings (power limits, clocks); it changes none.",
        "",
        f"Machine: {report.machine}",
        "",
        "## Checks",
        "",
        "| check | verdict | seconds | detail |",
        "|---|---|---|---|",
    ]
    for c in report.checks:
        lines.append(f"| {c.name} | {c.verdict} | {c.seconds:.1f} | {c.detail.replace('|', '/')} |")
    if report.pytest_summary:
        lines += ["", f"GPU tests: {report.pytest_summary}"]
    if report.skipped_tests:
        lines += ["", "Skipped GPU tests and why:", ""] + [f"- `{s}`" for s in report.skipped_tests]
    if report.timings:
        lines += ["", "## Timings the GPU tests measured", "", "| what | ms |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in sorted(report.timings.items())]
    if report.telemetry:
        keys = list(report.telemetry[0])
        lines += ["", "## Telemetry (read only)", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(row.get(k, "") for k in keys) + " |" for row in report.telemetry]
    lines += ["", "## Versions", "", "| component | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.versions.items()]
    doctor = next((c for c in report.checks if c.name == "edge doctor" and c.output), None)
    if doctor is not None:
        lines += ["", "## edge doctor", "", "```", doctor.output[-4000:], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the GPU checks and write benchmarks/results/gpu-<gpu>.md.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="report folder")
    parser.add_argument("--budget", type=float, default=290.0, help="seconds for all checks (default 290)")
    parser.add_argument("--allow-no-gpu", action="store_true", help=argparse.SUPPRESS)  # the tests' CPU run
    args = parser.parse_args(argv)
    from edge.backends.cuda import cuda_available

    ok, why = cuda_available()
    if not ok and not args.allow_no_gpu:
        print(f"gpu_check: no usable NVIDIA GPU here ({why})", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    gpu, machine, driver = machine_facts()
    precision = "fp32"
    if ok:
        from edge.backends.cuda import device_info

        if device_info(0).compute_capability == "7.5":
            precision = "fp16"  # Turing: TensorRT-RTX has no FP32 GEMM there (tests/gpu/conftest.py does the same)
    report = Report(gpu=gpu, machine=machine, started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    report.versions = {**driver, **versions()}

    def left() -> float:
        return args.budget - (time.perf_counter() - t_start) - 5.0

    py = sys.executable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        bundle = Path(work) / "check.bundle"
        timings = Path(work) / "timings.json"
        env["GPU_CHECK_TIMINGS"] = str(timings)
        env.setdefault("EDGE_STATE_DIR", str(Path(work) / "state"))
        info = Check("edge info")
        report.checks.append(info)
        run_step(info, [py, "-m", "edge", "info"], min(30.0, left()), env)
        build = Check("edge build (YOLOv8n, auto + cpu)")
        report.checks.append(build)
        argv = [py, "-m", "edge", "build", str(MODEL), "-o", str(bundle), "--target", "auto", "--target", "cpu"]
        argv += ["--skip-unavailable", "--precision", precision, "--task", "detect", "--decoder", "yolov8", *PROFILE]
        run_step(build, argv, min(120.0, left() - 100), env)
        doctor = Check("edge doctor")
        report.checks.append(doctor)
        if build.verdict == "ok":
            run_step(
                doctor,
                [py, "-m", "edge", "doctor", str(bundle), "--rtol", "0.02", "--atol", "0.001"],
                min(90.0, left() - 80),
                env,
            )
        else:
            doctor.detail = "no bundle (the build failed)"
        if build.verdict == "ok":
            env["GPU_CHECK_BUNDLE"] = str(bundle)  # the tests' gpu_bundle: built the same way, no second build
        tests = Check("pytest tests/gpu -m gpu")
        report.checks.append(tests)
        proc = run_step(
            tests,
            [py, "-m", "pytest", "tests/gpu", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider"],
            left() - 10,
            env,
        )
        if proc is not None:
            report.pytest_summary, report.skipped_tests = parse_pytest(tests.output)
            if proc.returncode == 5:  # no tests collected
                tests.verdict = "failed"
        if timings.is_file():
            report.timings = {k: float(v) for k, v in json.loads(timings.read_text()).items()}
    telemetry = Check("telemetry read")
    report.checks.append(telemetry)
    t0 = time.perf_counter()
    report.telemetry = nvml_telemetry()
    source = "NVML"
    if not report.telemetry:
        report.telemetry, source = smi_telemetry(), "nvidia-smi"
    line = tegrastats_line() if not report.telemetry else None
    if line:
        report.telemetry = [{"tegrastats": line}]
    telemetry.seconds = time.perf_counter() - t0
    telemetry.verdict = "ok" if report.telemetry else ("skipped" if args.allow_no_gpu else "failed")
    if line:
        source = "tegrastats"
    telemetry.detail = source if report.telemetry else "neither NVML, nvidia-smi nor tegrastats answered"
    report.total_seconds = time.perf_counter() - t_start
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-{slug(gpu)}.md"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(report), encoding="utf-8")
    tmp.replace(path)
    say(f"report: {path} ({'ok' if report.ok else 'FAILED'}, {report.total_seconds:.0f} s)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
