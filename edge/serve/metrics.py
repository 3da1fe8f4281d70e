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
| ``nv_inference_compute_infer_duration_us`` | cumulative time in the backend |
| ``nv_inference_pending_request_count`` | requests queued now (gauge) |

The cumulative ones only ever grow (counters, to be read with ``rate()``); they are exposed as
``untyped`` because prometheus-client's text format would rename a counter to ``NAME_total``, which is
not Triton's name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

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
        self._add("nv_inference_compute_infer_duration_us", model, version, stats.compute_us)
        self._add("nv_inference_queue_duration_us", model, version, sum(stats.queue_us))

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
