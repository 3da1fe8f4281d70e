"""The pipeline HTTP API under sustained load on loopback: aiohttp (the kit's stack) against the standard-library
handler it replaced, side by side with calling the model directly.

The real RetinaFace bundle on this machine's backend, scikit-image's astronaut as a JPEG upload (one face):

- baseline: decode the same JPEG and ``Model.predict`` in a loop, in process, one thread;
- ``POST /v1/infer`` with 1 and 4 clients, each on one keep-alive connection, back to back: on
  ``HttpObserver`` (aiohttp) and on ``benchmarks/stdlib_http.py`` (the old ``ThreadingHTTPServer`` handler,
  kept only here), both serving the same ``Api`` code and model;
- ``GET /v1/status`` the same way: the HTTP stack's own overhead, without the model.

All runs take turns in one-second slices (8 rounds; 3 with ``--quick``) so that the load of a shared machine
hits them alike. The load generator is ``http.client`` on threads, the same for both stacks.

Reported: requests per second, p50/p99 latency, errors (anything but 200 with the expected reply). Goals:
0 errors; one aiohttp client keeps >= 0.8 of the direct throughput; aiohttp is not slower than the stdlib
handler: on ``GET /v1/status`` (the stack's own cost) its server CPU per request and its p50 latency are at
most 1.1x the stdlib handler's. The other ratios (``/v1/infer``, where the model's time dominates, and
requests/s as the median over rounds of the ratio of slices that ran back to back) are reported only: on a
shared 2-core machine they swing with the load.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

GOAL_RATIO = 0.8
# "Not slower": on GET /v1/status (the HTTP stack's own cost, no model), aiohttp's server CPU per request and
# p50 latency at most this multiple of the stdlib handler's. Both measures hold still on a shared machine;
# requests/s there swings tenfold between slices, and on /v1/infer the model's ~40 ms swings +-10%, so those
# ratios are reported, not judged.
GOAL_STACK_RATIO = 1.1
TOKEN = "bench-token-0123456789abcdef0123"


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else 0.0


def _summary(latencies_ms: list[float], seconds: float, errors: int, cpu_s: float) -> dict[str, Any]:
    n = len(latencies_ms) + errors
    return {
        "requests": len(latencies_ms),
        "server_cpu_ms_per_request": round(cpu_s * 1000 / n, 3) if n else 0.0,
        "errors": errors,
        "rps": round(len(latencies_ms) / seconds, 2),
        "p50_ms": _percentile(latencies_ms, 50),
        "p99_ms": _percentile(latencies_ms, 99),
        "mean_ms": round(statistics.fmean(latencies_ms), 3) if latencies_ms else 0.0,
    }


def _direct(model: Any, data: bytes, seconds: float) -> tuple[list[float], int, float, float]:
    latencies, errors = [], 0
    cpu0 = _cpu()
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if len(model.predict(image)) != 1:
            errors += 1
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies, errors, time.perf_counter() - start, _cpu() - cpu0


# The load generator, run in its own process so that it takes neither the GIL nor the CPU time of the server
# it measures: ``clients`` threads, each on one keep-alive connection, back to back until the deadline.
CLIENT = r"""
import http.client, json, sys, threading, time
port, method, path, clients, seconds, body_file = sys.argv[1:7]
body = open(body_file, "rb").read() if body_file != "-" else None
headers = {"Authorization": "Bearer " + sys.argv[7], "Content-Type": "image/jpeg"}
end = time.perf_counter() + float(seconds)
out = {"latencies": [], "errors": 0}
lock = threading.Lock()

def ok(status, data):
    if status != 200:
        return False
    reply = json.loads(data)
    return len(reply["detections"]) == 1 if body is not None else reply["state"] == "starting"

def client():
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    mine, bad = [], 0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            good = ok(resp.status, resp.read())
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            good = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
        if good:
            mine.append((time.perf_counter() - t0) * 1000)
        else:
            bad += 1
    conn.close()
    with lock:
        out["latencies"] += mine
        out["errors"] += bad

start = time.perf_counter()
threads = [threading.Thread(target=client) for _ in range(int(clients))]
for t in threads:
    t.start()
for t in threads:
    t.join()
out["seconds"] = time.perf_counter() - start
print(json.dumps(out))
"""


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _http(port: int, body_file: Path | None, clients: int, seconds: float) -> tuple[list[float], int, float, float]:
    """POST ``body_file`` to /v1/infer (or, without one, GET /v1/status) from a client process.

    Returns (latencies ms, errors, seconds, CPU seconds this server process spent meanwhile)."""
    method, path = ("POST", "/v1/infer") if body_file is not None else ("GET", "/v1/status")
    argv = [sys.executable, "-c", CLIENT, str(port), method, path, str(clients), str(seconds)]
    argv += [str(body_file) if body_file is not None else "-", TOKEN]
    cpu0 = _cpu()
    run = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    cpu = _cpu() - cpu0
    out = json.loads(run.stdout)
    return out["latencies"], out["errors"], out["seconds"], cpu


def _interleaved(runs: dict[str, Any], rounds: int, slice_s: float) -> dict[str, dict[str, Any]]:
    """Each run gets ``rounds`` slices of ``slice_s`` seconds, in turn (the order reversed every other round),
    so load changes on a shared machine hit all of them alike. Each summary keeps its per-slice requests/s."""
    lat: dict[str, list[float]] = {k: [] for k in runs}
    err = dict.fromkeys(runs, 0)
    took = dict.fromkeys(runs, 0.0)
    cpu = dict.fromkeys(runs, 0.0)
    slices: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(rounds):
        for key, fn in list(runs.items())[:: 1 if i % 2 == 0 else -1]:
            latencies, errors, seconds, cpu_s = fn(slice_s)
            lat[key] += latencies
            err[key] += errors
            took[key] += seconds
            cpu[key] += cpu_s
            slices[key].append(len(latencies) / seconds if seconds else 0.0)
    out = {k: _summary(lat[k], took[k], err[k], cpu[k]) for k in runs}
    for k in runs:
        out[k]["slice_rps"] = [round(v, 2) for v in slices[k]]
    return out


def _paired_ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The median over rounds of a's requests/s over b's in the same round (the two ran back to back)."""
    ratios = [x / y for x, y in zip(a["slice_rps"], b["slice_rps"]) if y > 0]
    return round(statistics.median(ratios), 3) if ratios else 0.0


# (result key, label, route, clients, stack): every HTTP run, once per stack.
RUNS = [
    (f"{route}_{stack}_{clients}", route, clients, stack)
    for route in ("infer", "status")
    for clients in (1, 4)
    for stack in ("stdlib", "aiohttp")
]


def run(ctx: Any) -> dict[str, Any]:
    from edge.runtime import load
    from edge.service.api import Api
    from edge.service.config import HttpConfig
    from edge.service.http import HttpObserver
    from edge.service.metrics import Metrics
    from tests.runtime.bundles import photo, write_bundle

    from .stdlib_http import StdlibServer

    rounds = 3 if ctx.quick else 8
    with tempfile.TemporaryDirectory() as tmp:
        bundle = write_bundle(Path(tmp) / "retinaface.bundle")
        token = Path(tmp) / "token"
        token.write_text(TOKEN)
        token.chmod(0o600)
        _, buf = cv2.imencode(".jpg", photo("astronaut"), [cv2.IMWRITE_JPEG_QUALITY, 92])
        data = buf.tobytes()
        with load(bundle) as model:
            ctx.log(
                f"model on {model.backend_name}; {rounds} rounds of 1 s slices, the {len(RUNS) + 1} runs taking turns"
            )
            config = HttpConfig.from_dict({"listen": "127.0.0.1:0", "token_file": str(token)})
            observer = HttpObserver(config, model, environ={})
            stdlib = StdlibServer(Api(config, model, TOKEN.encode(), Metrics(process=False)))
            ports = {"aiohttp": observer.port, "stdlib": stdlib.port}
            runs: dict[str, Any] = {"direct": lambda s: _direct(model, data, s)}
            upload = Path(tmp) / "astronaut.jpg"
            upload.write_bytes(data)
            for key, route, clients, stack in RUNS:
                body = upload if route == "infer" else None
                runs[key] = lambda s, p=ports[stack], b=body, c=clients: _http(p, b, c, s)
            try:
                res = _interleaved(runs, rounds=rounds, slice_s=1.0)
            finally:
                observer.close()
                stdlib.close()
            for key, r in res.items():
                ctx.log(
                    f"{key}: {r['rps']} /s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                    f"server CPU {r['server_cpu_ms_per_request']} ms/request, errors {r['errors']}"
                )
            backend = model.backend_name
    errors = sum(r["errors"] for k, r in res.items() if k != "direct")
    ratio = round(res["infer_aiohttp_1"]["rps"] / res["direct"]["rps"], 3) if res["direct"]["rps"] else 0.0
    pairs = [(f"{route}_{clients}", route, clients) for route in ("infer", "status") for clients in (1, 4)]
    stack_ratios = {
        name: _paired_ratio(res[f"{route}_aiohttp_{clients}"], res[f"{route}_stdlib_{clients}"])
        for name, route, clients in pairs
    }
    cost_ratios = {
        name: {
            key: round(res[f"{route}_aiohttp_{clients}"][key] / res[f"{route}_stdlib_{clients}"][key], 3)
            if res[f"{route}_stdlib_{clients}"][key]
            else 0.0
            for key in ("server_cpu_ms_per_request", "p50_ms")
        }
        for name, route, clients in pairs
    }
    not_slower = all(v <= GOAL_STACK_RATIO for name in ("status_1", "status_4") for v in cost_ratios[name].values())
    return {
        "backend": backend,
        "image": "astronaut 512x512 JPEG",
        "seconds_per_run": float(rounds),
        "runs": res,
        "errors": errors,
        "ratio_http1_vs_direct_rps": ratio,
        "ratio_aiohttp_vs_stdlib_rps": stack_ratios,
        "ratio_aiohttp_vs_stdlib_cost": cost_ratios,
        "goal_ratio": GOAL_RATIO,
        "goal_stack_ratio": GOAL_STACK_RATIO,
        "goal_met": ratio >= GOAL_RATIO and errors == 0 and not_slower,
    }


def _row(label: str, r: dict[str, Any]) -> str:
    return (
        f"| {label} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['server_cpu_ms_per_request']} | {r['errors']} |"
    )


def report(result: dict[str, Any]) -> str:
    rows = [
        "| run | requests/s | p50 ms | p99 ms | server CPU ms/request | errors |",
        "|---|---|---|---|---|---|",
    ]
    runs = result["runs"]
    r = runs["direct"]
    rows.append(_row("direct predict (baseline)", r))
    for key, route, clients, stack in RUNS:
        r = runs[key]
        what = "POST /v1/infer" if route == "infer" else "GET /v1/status"
        label = f"{what}, {clients} client{'s' if clients > 1 else ''}, {stack}"
        rows.append(_row(label, r))
    verdict = "met" if result["goal_met"] else "NOT met"
    stacks = ", ".join(f"{k} {v}" for k, v in result["ratio_aiohttp_vs_stdlib_rps"].items())
    costs = ", ".join(
        f"{k} CPU {v['server_cpu_ms_per_request']} p50 {v['p50_ms']}"
        for k, v in result["ratio_aiohttp_vs_stdlib_cost"].items()
    )
    return "\n".join(
        [
            f"Loopback, {result['image']}, backend {result['backend']}, "
            f"{result['seconds_per_run']:g} s per run in 1 s slices taking turns.",
            "",
            *rows,
            "",
            f"ratio HTTP (aiohttp, 1 client) / direct throughput: **{result['ratio_http1_vs_direct_rps']}** "
            f"(goal >= {result['goal_ratio']}).",
            "",
            f"aiohttp / stdlib, server CPU per request and p50 latency: {costs} "
            f"(goal on status: <= {result['goal_stack_ratio']} each); requests/s, median of per-round ratios: {stacks}. "
            f"0 errors. Goals: {verdict}.",
        ]
    )
