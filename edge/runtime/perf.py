"""Latency/throughput measurement of a loaded model (``edge bench``), with trtexec's metric names."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge.errors import ConfigError
from edge.runtime.model import Model

STAGES = {"h2d": "H2D Latency", "compute": "GPU Compute Time", "d2h": "D2H Latency"}


def summarize(values_ms: Sequence[float]) -> dict[str, float]:
    """min/mean/median/p90/p95/p99/max of a list of milliseconds."""
    a = np.asarray(values_ms, dtype=np.float64)
    if a.size == 0:
        return {}
    return {
        "min": float(a.min()),
        "mean": float(a.mean()),
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
    }


SHAPE_FLAGS = ("--shapes", "--min-shapes", "--opt-shapes", "--max-shapes")


def batch_hint(model: Model, batch: int) -> str:
    """How to get a bundle that takes ``batch`` images per call: its own build command with a batch profile."""
    spec = model.inputs[0]
    dims = list(model.example_shape(spec, 1))
    if not dims:
        return "its input has no batch axis"
    name = spec.name
    low = "x".join(str(d) for d in [1, *dims[1:]])
    high = "x".join(str(d) for d in [batch, *dims[1:]])
    m = model.manifest
    words = []
    try:
        words = shlex.split(str(m.builder.get("command") or ""))
    except ValueError:
        words = []
    if not words:
        words = ["edge", "build", m.source]
    out: list[str] = []
    skip = False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        flag = word.split("=", 1)[0]
        if flag in (*SHAPE_FLAGS, "-o", "--output"):
            skip = "=" not in word and i + 1 < len(words)
            continue
        if word != "--force":
            out.append(word)
    out += ["-o", str(model.bundle.path), "--min-shapes", f"{name}:{low}", "--max-shapes", f"{name}:{high}", "--force"]
    static = model.manifest.inputs and model.manifest.inputs[0].shape and model.manifest.inputs[0].shape[0] > 0
    note = (
        f" (input {name!r} has a fixed batch of {spec.shape[0]} in this bundle: if the ONNX fixes it too, re-export it "
        "with a dynamic batch axis, e.g. Ultralytics `dynamic=True`, torch.onnx `dynamic_axes`)"
        if static
        else ""
    )
    return f"rebuild it with a batch profile: `{shlex.join(out)}`{note}"


def benchmark(
    model: Model,
    *,
    batch: int = 1,
    iterations: int = 100,
    warmup: int = 10,
    duration: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Time at least ``iterations`` inferences of a batch of example inputs, and at least ``duration`` seconds
    of them (trtexec's ``--iterations`` and ``--duration``), after ``warmup`` untimed ones. ``progress(done,
    planned)`` is called after each call (``done`` negative during warm-up); ``planned`` grows as the duration
    needs more calls.

    Returns ``throughput_qps`` (images per second), ``latency_ms`` (per call, host wall clock around the
    backend), and ``h2d_ms``/``compute_ms``/``d2h_ms`` where the backend measures them with CUDA events.
    """
    if batch < 1:
        raise ConfigError(f"--batch {batch}: expected 1 or more")
    if batch > model.max_batch:
        raise ConfigError(
            f"--batch {batch}: this bundle takes batches of 1..{model.max_batch}; {batch_hint(model, batch)}"
        )
    if iterations < 1 or warmup < 0 or duration < 0:
        raise ConfigError("--iterations must be >= 1, --warmup and --duration >= 0")
    feeds = model.example_inputs(batch)
    for i in range(warmup):
        model.infer_raw(feeds)
        if progress:
            progress(-(i + 1), warmup)
    latencies: list[float] = []
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    t0 = time.perf_counter()
    while True:
        s = time.perf_counter()
        model.infer_raw(feeds)
        latencies.append((time.perf_counter() - s) * 1000.0)
        for k in STAGES:
            if k in model.timings:
                stages[k].append(model.timings[k])
        n, elapsed = len(latencies), time.perf_counter() - t0
        if n >= iterations and elapsed >= duration:
            break
        if progress:  # the calls still needed: the iterations left, or the duration left at the rate so far
            progress(n, max(iterations, n + 1 + int(max(0.0, duration - elapsed) / (elapsed / n))))
    if progress:
        progress(n, n)
    total = time.perf_counter() - t0
    iterations = n
    result: dict[str, Any] = {
        "bundle": str(model.bundle.path),
        "artifact": model.artifact.file,
        "backend": model.backend_name,
        "batch": batch,
        "iterations": iterations,
        "warmup": warmup,
        "input_shapes": {k: list(v.shape) for k, v in feeds.items()},
        "throughput_qps": iterations * batch / total if total > 0 else 0.0,
        "latency_ms": summarize(latencies),
    }
    for k, values in stages.items():
        if values:
            result[f"{k}_ms"] = summarize(values)
    return result


def format_report(result: dict[str, Any]) -> str:
    """trtexec-style text: ``Throughput: N qps`` and ``Latency: min = ... ms, mean = ...``."""

    def line(title: str, s: dict[str, float]) -> str:
        return (
            f"{title}: min = {s['min']:.3f} ms, max = {s['max']:.3f} ms, mean = {s['mean']:.3f} ms, "
            f"median = {s['median']:.3f} ms, percentile(90%) = {s['p90']:.3f} ms, "
            f"percentile(95%) = {s['p95']:.3f} ms, percentile(99%) = {s['p99']:.3f} ms"
        )

    shapes = ", ".join(f"{k} {v}" for k, v in result["input_shapes"].items())
    lines = [
        f"Bundle: {result['bundle']} ({result['artifact']} on {result['backend']})",
        f"Input: {shapes}; batch {result['batch']}, {result['iterations']} iterations after {result['warmup']} warm-up",
        f"Throughput: {result['throughput_qps']:.2f} qps",
        line("Latency", result["latency_ms"]),
    ]
    for key, title in STAGES.items():
        if f"{key}_ms" in result:
            lines.append(line(title, result[f"{key}_ms"]))
    return "\n".join(lines)
