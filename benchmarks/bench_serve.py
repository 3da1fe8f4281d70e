"""``edge serve`` under load on loopback, measured the way Triton's perf_analyzer does, beside the same
backend's best offline throughput.

Models (CPU backend, ONNX Runtime): a detector (RetinaFace, the demo's model, raw 1x3x320x320 tensors) and a
classifier (SqueezeNet 1.1 from ONNX's test data with a dynamic batch axis, 1x3x224x224). Each is served by
``edge serve`` in its own process, once with dynamic batching (``max_batch: 16``, ``max_queue_delay_us: 0``)
and once without (``dynamic_batching: false``).

Load generator: tritonclient's async HTTP and gRPC clients (``tritonclient.http.aio``, ``tritonclient.grpc.aio``)
at a fixed concurrency of 1, 4 and 16 (that many requests always outstanding, each sent as soon as the previous
one of its slot is answered), binary tensors. Method (perf_analyzer's): a warm-up window, then measurement
windows until the last three agree within 10% on throughput (at most ``MAX_WINDOWS``); the last three windows
are reported: requests/s, p50 and p99 latency, errors.

Baselines, in the same run: ``Model.infer_raw`` called directly in process, batch 1 (p50 latency: "a direct
predict call") and batches 1, 4, 8, 16 (the best items/s is "offline batched throughput").

Goals: at concurrency 16 with batching, throughput >= 0.9 of the offline figure; at concurrency 1, p50 within
1 ms of the direct call. ``--long`` (``python -m benchmarks.run serve --long`` or ``python -m
benchmarks.bench_serve --long``) adds the soak: 10 minutes at concurrency 16 over both protocols, 0 errors,
server RSS growth <= 5% (from the end of the first minute to the end).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 4, 16)
PROTOCOLS = ("http", "grpc")
GOAL_BATCHED_VS_OFFLINE = 0.9
GOAL_C1_P50_DELTA_MS = 1.0
GOAL_RSS_GROWTH = 0.05
STABLE = 0.10  # perf_analyzer's default stability threshold
MAX_WINDOWS = 6
INPUTS = {"detector": "input", "classifier": "data_0"}
SOAK_MINUTES = 10.0


# ---- models ----------------------------------------------------------------------------------------------
def make_bundles(work: Path) -> dict[str, tuple[Path, tuple[int, ...]]]:
    """name -> (bundle, request shape)."""
    import onnx

    from edge.manifest import TensorSpec
    from edge.spec import PostprocessSpec, PreprocessSpec
    from tests.models import light_model_dynamic_batch
    from tests.runtime.bundles import write_bundle

    detector = write_bundle(work / "detector.bundle", name="detector")
    cls_model = light_model_dynamic_batch("squeezenet")
    classifier = write_bundle(
        work / "classifier.bundle",
        cls_model.SerializeToString(),
        preprocess=PreprocessSpec(input="data_0", size=(224, 224), resize="center-crop"),
        postprocess=PostprocessSpec(task="classify"),
        inputs=[TensorSpec("data_0", "float32", (-1, 3, 224, 224))],
        outputs=[TensorSpec("softmaxout_1", "float32", (-1, 1000, 1, 1))],
        name="classifier",
    )
    del onnx
    return {"detector": (detector, (1, 3, 320, 320)), "classifier": (classifier, (1, 3, 224, 224))}


def make_repo(root: Path, bundles: dict[str, tuple[Path, tuple[int, ...]]], batching: bool) -> Path:
    if root.exists():
        shutil.rmtree(root)
    for name, (bundle, _) in bundles.items():
        shutil.copytree(bundle, root / name / "1")
        config = "max_batch: 16\nmax_queue_delay_us: 0\n" if batching else "dynamic_batching: false\n"
        (root / name / "config.yaml").write_text(config)
    return root


# ---- baselines -------------------------------------------------------------------------------------------
def offline(bundle: Path, shape: tuple[int, ...], seconds: float) -> dict[str, Any]:
    """Direct Model.infer_raw: p50 at batch 1, and items/s per batch size."""
    from edge.runtime import load

    model = load(bundle, "onnxruntime-cpu")
    name = model.inputs[0].name
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"items_per_s": {}}
    try:
        for batch in [b for b in (1, 4, 8, 16) if b <= model.max_batch]:
            x = rng.random((batch, *shape[1:]), dtype=np.float32)
            model.infer_raw({name: x})
            lat: list[float] = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end or len(lat) < 3:
                t0 = time.perf_counter()
                model.infer_raw({name: x})
                lat.append(time.perf_counter() - t0)
            out["items_per_s"][str(batch)] = round(batch * len(lat) / sum(lat), 2)
            if batch == 1:
                out["p50_ms"] = round(float(np.percentile(lat, 50)) * 1000, 3)
                out["p99_ms"] = round(float(np.percentile(lat, 99)) * 1000, 3)
    finally:
        model.close()
    out["best_items_per_s"] = max(out["items_per_s"].values())
    return out


# ---- the server ------------------------------------------------------------------------------------------
class ServeProcess:
    def __init__(self, repo: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "edge", "serve", str(repo), "--no-auth", "--poll", "0",
               "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        assert self.proc.stderr is not None
        self.log: list[str] = []
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"serving .* on http 127\.0\.0\.1:(\d+), grpc 127\.0\.0\.1:(\d+)", line)
            if m:
                self.http, self.grpc = f"127.0.0.1:{m.group(1)}", f"127.0.0.1:{m.group(2)}"
                break
        else:
            raise RuntimeError("edge serve did not start:\n" + "".join(self.log[-20:]))
        self._drain = threading.Thread(target=lambda: self.log.extend(self.proc.stderr or []), daemon=True)
        self._drain.start()

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


# ---- the load generator ----------------------------------------------------------------------------------
class Slots:
    """Fixed concurrency: ``c`` requests outstanding; latencies and errors per window."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.total_errors = 0  # warm-up included
        self.last_error = ""


async def _client(protocol: str, url: str, c: int) -> tuple[Any, Any]:
    if protocol == "http":
        import tritonclient.http.aio as tha

        return tha.InferenceServerClient(url, conn_limit=c), tha
    import tritonclient.grpc.aio as tga

    return tga.InferenceServerClient(url), tga


async def measure(
    protocol: str,
    url: str,
    model: str,
    shape: tuple[int, ...],
    c: int,
    window_s: float,
    max_windows: int,
    input_name: str | None = None,
) -> dict[str, Any]:
    client, mod = await _client(protocol, url, c)
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    name = input_name or INPUTS[model]
    slots = Slots()
    stop = asyncio.Event()

    async def slot() -> None:
        inp = mod.InferInput(name, list(shape), "FP32")
        inp.set_data_from_numpy(x)
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                await client.infer(model, [inp])
                slots.latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # counted and shown, never fatal to the benchmark
                slots.errors += 1
                slots.total_errors += 1
                slots.last_error = str(exc)[:200]

    tasks = [asyncio.ensure_future(slot()) for _ in range(c)]
    windows: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(window_s)  # warm-up window (a timer: the load runs meanwhile)
        for _ in range(max_windows):
            slots.latencies, slots.errors = [], 0
            t0 = time.perf_counter()
            await asyncio.sleep(window_s)
            elapsed = time.perf_counter() - t0
            windows.append(
                {"lat": list(slots.latencies), "errors": slots.errors, "rps": len(slots.latencies) / elapsed}
            )
            if len(windows) >= 3:
                last = [w["rps"] for w in windows[-3:]]
                mean = sum(last) / 3
                if mean > 0 and all(abs(v - mean) <= STABLE * mean for v in last):
                    break
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
    last3 = windows[-3:]
    lat = [v for w in last3 for v in w["lat"]]
    rps = [w["rps"] for w in last3]
    return {
        "rps": round(sum(rps) / len(rps), 2),
        "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 3) if lat else None,
        "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 3) if lat else None,
        "errors": slots.total_errors,
        "windows": len(windows),
        "stable": len(rps) == 3 and all(abs(v - sum(rps) / 3) <= STABLE * sum(rps) / 3 for v in rps),
        "last_error": slots.last_error,
    }


# ---- paired rounds for the goals -------------------------------------------------------------------------
def direct_window(model: Any, feeds: dict[str, np.ndarray], seconds: float) -> list[float]:
    lat: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(lat) < 3:
        t0 = time.perf_counter()
        model.infer_raw(feeds)
        lat.append(time.perf_counter() - t0)
    return lat


def paired(
    model: Any,
    name: str,
    shape: tuple[int, ...],
    batch: int,
    url: str,
    protocol: str,
    c: int,
    rounds: int,
    window_s: float,
    metrics_url: str,
) -> dict[str, Any]:
    """Direct ``infer_raw`` (batch ``batch``) and the server (concurrency ``c``) taking turns in short windows, so a
    shared machine's load hits both alike; pooled over ``rounds``."""
    feeds = {model.inputs[0].name: np.random.default_rng(2).random((batch, *shape[1:]), dtype=np.float32)}
    direct: list[float] = []
    served: list[dict[str, Any]] = []
    server: dict[str, float] = {}
    for _ in range(rounds):
        direct += direct_window(model, feeds, window_s)
        before = server_counters(metrics_url, name)
        served.append(asyncio.run(measure(protocol, url, name, shape, c, window_s, 1)))
        after = server_counters(metrics_url, name)
        for k in after:
            server[k] = server.get(k, 0.0) + after[k] - before.get(k, 0.0)
    n = server.get("nv_inference_request_success", 0.0) or 1.0
    request_ms = server.get("nv_inference_request_duration_us", 0.0) / n / 1000
    compute_ms = server.get("nv_inference_compute_infer_duration_us", 0.0) / n / 1000  # per request, as Triton
    return {
        "direct_p50_ms": round(float(np.percentile(direct, 50)) * 1000, 3),
        "direct_items_per_s": round(batch * len(direct) / sum(direct), 2),
        "served_p50_ms": round(float(np.median([r["p50_ms"] for r in served])), 3),
        "served_rps": round(float(np.mean([r["rps"] for r in served])), 2),
        # the server's own view (Triton's counters): mean arrival-to-answer time and mean backend time per batch
        "server_request_ms": round(request_ms, 3),
        "server_compute_ms": round(compute_ms, 3),
        "errors": sum(r["errors"] for r in served),
    }


def server_counters(metrics_url: str, model: str) -> dict[str, float]:
    """The model's cumulative nv_inference_* counters from the server's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("nv_inference_") and f'model="{model}"' in line:
            name = line.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


# ---- the benchmark ---------------------------------------------------------------------------------------
def paired_runs(
    ctx: Any,
    model: str,
    bundle: Path,
    shape: tuple[int, ...],
    server: ServeProcess,
    rounds: int,
    window_s: float,
    result_offline: dict[str, Any],
) -> dict[str, Any]:
    from edge.runtime import load

    direct = load(bundle, "onnxruntime-cpu")
    try:
        sweep = result_offline["items_per_s"]
        best = int(max(sweep, key=lambda b: sweep[b]))  # the offline sweep's best batch size
        out = {}
        for protocol in PROTOCOLS:
            url = server.http if protocol == "http" else server.grpc
            name = model
            one = paired(direct, name, shape, 1, url, protocol, 1, rounds, window_s, server.http)
            one["delta_ms"] = round(one["served_p50_ms"] - one["direct_p50_ms"], 3)
            one["server_overhead_ms"] = round(one["server_request_ms"] - one["server_compute_ms"], 3)
            many = paired(direct, name, shape, best, url, protocol, 16, rounds, window_s, server.http)
            many["ratio"] = round(many["served_rps"] / many["direct_items_per_s"], 3)
            out[f"{protocol}-c1"], out[f"{protocol}-c16"] = one, many
            ctx.log(
                f"{model} {protocol} paired: c=1 p50 {one['served_p50_ms']} vs direct {one['direct_p50_ms']} ms; "
                f"c=16 {many['served_rps']} req/s vs offline batch {best} {many['direct_items_per_s']} items/s"
            )
        return out
    finally:
        direct.close()


def run(ctx: Any) -> dict[str, Any]:
    window_s = 0.5 if ctx.quick else 1.5
    max_windows = 4 if ctx.quick else MAX_WINDOWS
    rounds = 3 if ctx.quick else 6
    work = ctx.out / "serve-work"
    work.mkdir(parents=True, exist_ok=True)
    bundles = make_bundles(work)
    result: dict[str, Any] = {"window_s": window_s, "concurrency": list(CONCURRENCY), "models": {}}
    for model, (bundle, shape) in bundles.items():
        ctx.log(f"{model}: offline baseline (direct infer_raw)")
        result["models"][model] = {
            "shape": list(shape),
            "offline": offline(bundle, shape, 1.0 if ctx.quick else 3.0),
            "runs": {},
        }
    for batching in (True, False):
        repo = make_repo(work / ("repo-batched" if batching else "repo-single"), bundles, batching)
        server = ServeProcess(repo)
        try:
            for model, (_, shape) in bundles.items():
                for protocol in PROTOCOLS:
                    for c in CONCURRENCY:
                        key = f"{protocol}-c{c}-{'batched' if batching else 'single'}"
                        url = server.http if protocol == "http" else server.grpc
                        r = asyncio.run(measure(protocol, url, model, shape, c, window_s, max_windows))
                        result["models"][model]["runs"][key] = r
                        ctx.log(
                            f"{model} {key}: {r['rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}"
                        )
            if batching:
                for model, (bundle, shape) in bundles.items():
                    result["models"][model]["paired"] = paired_runs(
                        ctx, model, bundle, shape, server, rounds, window_s, result["models"][model]["offline"]
                    )
        finally:
            server.stop()
    goals = True
    for m in result["models"].values():
        pr = m["paired"]
        m["ratio_c16_batched_vs_offline"] = {p: pr[f"{p}-c16"]["ratio"] for p in PROTOCOLS}
        m["c1_p50_delta_ms"] = {p: pr[f"{p}-c1"]["delta_ms"] for p in PROTOCOLS}
        m["errors"] = sum(r["errors"] for r in m["runs"].values()) + sum(r["errors"] for r in pr.values())
        goals &= max(m["ratio_c16_batched_vs_offline"].values()) >= GOAL_BATCHED_VS_OFFLINE
        goals &= min(m["c1_p50_delta_ms"].values()) <= GOAL_C1_P50_DELTA_MS and m["errors"] == 0
    result["goal_batched_vs_offline"] = GOAL_BATCHED_VS_OFFLINE
    result["goal_c1_p50_delta_ms"] = GOAL_C1_P50_DELTA_MS
    result["goals_met"] = goals
    if getattr(ctx, "long", False):
        result["soak"] = soak(ctx, bundles, work, getattr(ctx, "soak_minutes", SOAK_MINUTES))
    return result


def soak(ctx: Any, bundles: dict[str, tuple[Path, tuple[int, ...]]], work: Path, minutes: float) -> dict[str, Any]:
    """Concurrency 16 (8 HTTP + 8 gRPC) on the detector for ``minutes``; RSS from the end of minute 1 (or 10%)."""
    repo = make_repo(work / "repo-soak", bundles, True)
    server = ServeProcess(repo)
    shape = bundles["detector"][1]
    seconds = minutes * 60
    settle = min(60.0, seconds * 0.1)
    samples: list[tuple[float, int]] = []

    async def go() -> dict[str, Any]:
        async def half(protocol: str) -> dict[str, Any]:
            url = server.http if protocol == "http" else server.grpc
            return await measure(protocol, url, "detector", shape, 8, seconds / 4, 3)  # warm-up + 3 windows

        async def sampler() -> None:
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                samples.append((time.monotonic() - t0, server.rss_kb()))
                await asyncio.sleep(min(5.0, seconds / 20))  # a sampling timer

        s = asyncio.ensure_future(sampler())
        runs = await asyncio.gather(half("http"), half("grpc"))
        s.cancel()
        return {"http": runs[0], "grpc": runs[1]}

    ctx.log(f"soak: {minutes:g} min at concurrency 16 (8 HTTP + 8 gRPC), detector")
    try:
        runs = asyncio.run(go())
        samples.append((seconds, server.rss_kb()))
    finally:
        rc = server.stop()
    base = next((kb for t, kb in samples if t >= settle), samples[0][1])
    end = samples[-1][1]
    growth = (end - base) / base if base else 0.0
    errors = runs["http"]["errors"] + runs["grpc"]["errors"]
    return {
        "minutes": minutes,
        "runs": runs,
        "errors": errors,
        "rss_kb_start": base,
        "rss_kb_end": end,
        "rss_growth": round(growth, 4),
        "exit_code": rc,
        "goal_met": errors == 0 and growth <= GOAL_RSS_GROWTH and rc == 0,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"`edge serve` on loopback, ONNX Runtime CPU, tritonclient aio load at fixed concurrency, "
        f"{result['window_s']:g} s windows until 3 agree within 10%.",
        "",
    ]
    for model, m in result["models"].items():
        off = m["offline"]
        lines += [
            f"**{model}** {m['shape']}: direct infer_raw batch 1 p50 {off['p50_ms']} ms; offline items/s by batch "
            + ", ".join(f"{b}: {v}" for b, v in off["items_per_s"].items())
            + f" (best {off['best_items_per_s']})",
            "",
            "| protocol | batching | concurrency | requests/s | p50 ms | p99 ms | errors | stable |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, r in m["runs"].items():
            protocol, c, mode = key.split("-")
            lines.append(
                f"| {protocol} | {mode} | {c[1:]} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | "
                f"{'yes' if r['stable'] else 'no'} |"
            )
        pr = m["paired"]
        lines += ["", "Paired rounds (direct and served taking turns):", ""]
        lines += [
            "| protocol | c=1 p50 ms served / direct (delta) | c=1 server's own ms per request: data plane - backend "
            "| c=16 batched req/s / offline items/s (ratio) |",
            "|---|---|---|---|",
        ]
        for p in PROTOCOLS:
            one, many = pr[f"{p}-c1"], pr[f"{p}-c16"]
            lines.append(
                f"| {p} | {one['served_p50_ms']} / {one['direct_p50_ms']} (**{one['delta_ms']:+.2f} ms**, goal <= "
                f"{result['goal_c1_p50_delta_ms']:g}) | {one['server_request_ms']} - {one['server_compute_ms']} = "
                f"**{one['server_overhead_ms']} ms** | {many['served_rps']} / {many['direct_items_per_s']} "
                f"(**{many['ratio']}**, goal >= {result['goal_batched_vs_offline']}) |"
            )
        lines.append("")
    lines.append(f"Goals met: {'yes' if result['goals_met'] else 'NO'}")
    soak_r = result.get("soak")
    if soak_r:
        lines += [
            "",
            f"Soak: {soak_r['minutes']:g} min at concurrency 16: {soak_r['errors']} errors, RSS "
            f"{soak_r['rss_kb_start']} -> {soak_r['rss_kb_end']} kB ({soak_r['rss_growth'] * 100:+.1f}%, goal <= 5%), "
            f"exit {soak_r['exit_code']}: {'met' if soak_r['goal_met'] else 'NOT met'}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_serve", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--long", action="store_true", help="add the soak (10 minutes unless --soak-minutes)")
    parser.add_argument("--soak-minutes", type=float, default=SOAK_MINUTES)
    parser.add_argument("--soak-only", action="store_true", help="run only the soak")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    class Ctx:
        out = args.out
        quick = args.quick
        long = args.long
        soak_minutes = args.soak_minutes

        @staticmethod
        def log(message: str) -> None:
            print(f"  {message}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    if args.soak_only:
        work = args.out / "serve-work"
        work.mkdir(parents=True, exist_ok=True)
        print(json.dumps(soak(Ctx(), make_bundles(work), work, args.soak_minutes), indent=2, default=str))
        return 0
    result = run(Ctx())
    print(json.dumps({k: v for k, v in result.items() if k != "models"}, indent=2, default=str))
    print(report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
