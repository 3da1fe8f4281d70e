"""POST /v1/infer under sustained load on loopback, side by side with calling the model directly.

The real RetinaFace bundle on this machine's backend, scikit-image's astronaut as a JPEG upload (one face):

- baseline: decode the same JPEG and ``Model.predict`` in a loop, in process, one thread;
- HTTP: ``HttpObserver`` on 127.0.0.1 with a bearer token; 1 and 4 clients, each on one keep-alive
  connection, posting the JPEG back to back for a fixed time.

The three runs take turns in one-second slices (10 rounds; 3 with ``--quick``) so that the load of a shared
machine hits them alike.

Reported: requests per second, p50/p99 latency, errors (anything but 200 with one face). Goals: 0 errors;
one HTTP client keeps >= 0.8 of the direct throughput (the API's overhead: parsing, decoding, JSON).
"""

from __future__ import annotations

import http.client
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

GOAL_RATIO = 0.8
TOKEN = "bench-token-0123456789abcdef0123"


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else 0.0


def _summary(latencies_ms: list[float], seconds: float, errors: int) -> dict[str, Any]:
    return {
        "requests": len(latencies_ms),
        "errors": errors,
        "rps": round(len(latencies_ms) / seconds, 2),
        "p50_ms": _percentile(latencies_ms, 50),
        "p99_ms": _percentile(latencies_ms, 99),
        "mean_ms": round(statistics.fmean(latencies_ms), 3) if latencies_ms else 0.0,
    }


def _direct(model: Any, data: bytes, seconds: float) -> tuple[list[float], int, float]:
    latencies, errors = [], 0
    end = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if len(model.predict(image)) != 1:
            errors += 1
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies, errors, time.perf_counter() - start


def _http(port: int, data: bytes, clients: int, seconds: float) -> tuple[list[float], int, float]:
    import json

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "image/jpeg"}

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        bad = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/infer", body=data, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200 and len(json.loads(body)["detections"]) == 1
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if ok:
                mine.append((time.perf_counter() - t0) * 1000)
            else:
                bad += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - start


def _interleaved(runs: dict[str, Any], rounds: int, slice_s: float) -> dict[str, dict[str, Any]]:
    """Each run gets ``rounds`` slices of ``slice_s`` seconds, in turn, so load changes hit all of them alike."""
    lat: dict[str, list[float]] = {k: [] for k in runs}
    err = dict.fromkeys(runs, 0)
    took = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for key, fn in runs.items():
            latencies, errors, seconds = fn(slice_s)
            lat[key] += latencies
            err[key] += errors
            took[key] += seconds
    return {k: _summary(lat[k], took[k], err[k]) for k in runs}


def run(ctx: Any) -> dict[str, Any]:
    from edge.runtime import load
    from edge.service.config import HttpConfig
    from edge.service.http import HttpObserver
    from tests.runtime.bundles import photo, write_bundle

    seconds = 3.0 if ctx.quick else 10.0
    with tempfile.TemporaryDirectory() as tmp:
        bundle = write_bundle(Path(tmp) / "retinaface.bundle")
        token = Path(tmp) / "token"
        token.write_text(TOKEN)
        token.chmod(0o600)
        _, buf = cv2.imencode(".jpg", photo("astronaut"), [cv2.IMWRITE_JPEG_QUALITY, 92])
        data = buf.tobytes()
        with load(bundle) as model:
            ctx.log(f"model on {model.backend_name}; {seconds:g} s per run, in 1 s slices taking turns")
            config = HttpConfig.from_dict({"listen": "127.0.0.1:0", "token_file": str(token)})
            observer = HttpObserver(config, model, environ={})
            port = observer.port
            try:
                res = _interleaved(
                    {
                        "direct": lambda s: _direct(model, data, s),
                        "http1": lambda s: _http(port, data, 1, s),
                        "http4": lambda s: _http(port, data, 4, s),
                    },
                    rounds=int(seconds),
                    slice_s=1.0,
                )
                direct, one, four = res["direct"], res["http1"], res["http4"]
                for label, r in (("direct", direct), ("http x1", one), ("http x4", four)):
                    ctx.log(f"{label}: {r['rps']} /s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}")
            finally:
                observer.close()
            backend = model.backend_name
    ratio = round(one["rps"] / direct["rps"], 3) if direct["rps"] else 0.0
    return {
        "backend": backend,
        "image": "astronaut 512x512 JPEG",
        "seconds_per_run": seconds,
        "direct": direct,
        "http_1_client": one,
        "http_4_clients": four,
        "errors": one["errors"] + four["errors"],
        "ratio_http1_vs_direct_rps": ratio,
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio >= GOAL_RATIO and one["errors"] + four["errors"] == 0,
    }


def report(result: dict[str, Any]) -> str:
    rows = [
        "| run | requests/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
    ]
    for label, key in (
        ("direct predict (baseline)", "direct"),
        ("HTTP, 1 client", "http_1_client"),
        ("HTTP, 4 clients", "http_4_clients"),
    ):
        r = result[key]
        rows.append(f"| {label} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |")
    verdict = "met" if result["goal_met"] else "NOT met"
    return "\n".join(
        [
            f"POST /v1/infer on loopback, {result['image']}, backend {result['backend']}, "
            f"{result['seconds_per_run']:g} s per run.",
            "",
            *rows,
            "",
            f"ratio HTTP (1 client) / direct throughput: **{result['ratio_http1_vs_direct_rps']}** "
            f"(goal >= {result['goal_ratio']}, 0 errors: {verdict})",
        ]
    )
