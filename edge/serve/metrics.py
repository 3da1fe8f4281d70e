"""Triton's metric names for served models, exposed through prometheus-client on the server's own registry.

Names and labels (``model``, ``version``) match Triton's, so dashboards made for Triton read
``edge serve`` unchanged:

| metric | what |
|---|---|
| ``nv_inference_request_success`` | requests answered |
| ``nv_inference_request_failure`` | requests that failed (``reason`` label, as Triton 2.40+) |
| ``nv_inference_count`` | inferences performed (batch items) |
| ``nv_inference_exec_count`` | model executions (batches) |
| ``nv_inference_request_duration_us`` | cumulative request time, arrival to answer |
| ``nv_inference_queue_duration_us`` | cumulative time requests waited in the queue |
| ``nv_inference_compute_infer_duration_us`` | cumulative time in the backend, per request (a batch's time counts once per request in it) |
| ``nv_inference_pending_request_count`` | requests queued now (gauge) |

The cumulative ones only ever grow (counters, to be read with ``rate()``); they are exposed as
``untyped`` because prometheus-client's text format would rename a counter to ``NAME_total``, which is
not Triton's name.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

from edge.serve.batcher import BatchStats

CONTENT_TYPE = CONTENT_TYPE_LATEST

CUMULATIVE = {
    "nv_inference_request_success": "Number of successful inference requests, all batch sizes",
    "nv_inference_request_failure": "Number of failed inference requests, all batch sizes",
    "nv_inference_count": "Number of inferences performed (does not include cached requests)",
    "nv_inference_exec_count": "Number of model executions performed (does not include cached requests)",
    "nv_inference_request_duration_us": "Cumulative inference request duration in microseconds",
    "nv_inference_queue_duration_us": "Cumulative inference queuing duration in microseconds",
    "nv_inference_compute_infer_duration_us": "Cumulative compute inference duration in microseconds",
}
PENDING = "nv_inference_pending_request_count"

Labels = tuple[tuple[str, str], ...]


class ServeMetrics:
    """Counters updated on the event loop; ``pending`` reads the queues when scraped."""

    def __init__(self, pending: Callable[[], dict[tuple[str, str], int]] | None = None) -> None:
        self.values: dict[str, dict[Labels, float]] = {name: defaultdict(float) for name in CUMULATIVE}
        self.executed: dict[tuple[str, str], int] = {}  # requests that ran (their queue and compute times are kept)
        self.last_inference_ms: dict[tuple[str, str], int] = {}
        self.batch_sizes: dict[tuple[str, str], dict[int, tuple[int, float]]] = {}  # size -> (executions, compute us)
        self.pending_source = pending
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        for name, doc in CUMULATIVE.items():
            m = Metric(name, doc, "unknown")
            for labels, value in list(self.values[name].items()):
                m.add_sample(name, dict(labels), value)
            yield m
        if self.pending_source is not None:
            g = Metric(PENDING, "Instantaneous number of pending requests awaiting execution per-model", "gauge")
            for (model, version), n in self.pending_source().items():
                g.add_sample(PENDING, {"model": model, "version": version}, float(n))
            yield g

    def _add(self, name: str, model: str, version: str, value: float, **extra: str) -> None:
        labels: Labels = (("model", model), ("version", version), *sorted(extra.items()))
        self.values[name][labels] += value

    def on_batch(self, model: str, version: str, stats: BatchStats) -> None:
        self._add("nv_inference_count", model, version, stats.items)
        self._add("nv_inference_exec_count", model, version, 1)
        # per request, as Triton counts it: each request of a batch spent the batch's compute time
        self._add("nv_inference_compute_infer_duration_us", model, version, stats.compute_us * stats.requests)
        self._add("nv_inference_queue_duration_us", model, version, sum(stats.queue_us))
        key = (model, version)
        self.executed[key] = self.executed.get(key, 0) + stats.requests
        self.last_inference_ms[key] = int(time.time() * 1000)
        sizes = self.batch_sizes.setdefault(key, {})
        count, us = sizes.get(stats.items, (0, 0.0))
        sizes[stats.items] = (count + 1, us + stats.compute_us)

    def statistics(self, model: str, version: str) -> dict[str, Any]:
        """Triton's statistics extension for one model version (``GET /v2/models/NAME/stats``, ModelStatistics)."""
        key = (model, version)

        def duration(count: float, us: float) -> dict[str, int]:
            return {"count": int(count), "ns": int(us * 1000)}

        ok = self.value("nv_inference_request_success", model, version)
        failed = self.value("nv_inference_request_failure", model, version)
        executed = self.executed.get(key, 0)
        # request durations are kept as one sum over successes and failures: split in proportion
        total_us = self.value("nv_inference_request_duration_us", model, version)
        ok_us = total_us * ok / (ok + failed) if ok + failed else 0.0
        zero = duration(0, 0)
        return {
            "name": model,
            "version": version,
            "last_inference": self.last_inference_ms.get(key, 0),
            "inference_count": int(self.value("nv_inference_count", model, version)),
            "execution_count": int(self.value("nv_inference_exec_count", model, version)),
            "inference_stats": {
                "success": duration(ok, ok_us),
                "fail": duration(failed, total_us - ok_us),
                "queue": duration(executed, self.value("nv_inference_queue_duration_us", model, version)),
                "compute_input": duration(executed, 0),
                "compute_infer": duration(
                    executed, self.value("nv_inference_compute_infer_duration_us", model, version)
                ),
                "compute_output": duration(executed, 0),
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": duration(count, 0),
                    "compute_infer": duration(count, us),
                    "compute_output": duration(count, 0),
                }
                for size, (count, us) in sorted(self.batch_sizes.get(key, {}).items())
            ],
        }

    def on_request(self, model: str, version: str, ok: bool, duration_us: float, reason: str = "") -> None:
        if ok:
            self._add("nv_inference_request_success", model, version, 1)
        else:
            self._add("nv_inference_request_failure", model, version, 1, reason=reason or "OTHER")
        self._add("nv_inference_request_duration_us", model, version, duration_us)

    def value(self, name: str, model: str, version: str) -> float:
        """One counter's value summed over its other labels (tests, benchmarks)."""
        return sum(
            v
            for k, v in self.values[name].items()
            if dict(k).get("model") == model and dict(k).get("version") == version
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
