"""Prometheus metrics of the batcher, kept in the worker's parent process.

The parent sees every batch go out to a pool process and come back, so it can count messages,
texts and batch latency without Prometheus' multi-process mode; per-item cache figures live in
``embedq cache stats``. The exporter starts only when ``EMBEDQ_METRICS_PORT`` is set.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from embedq.tasks.names import parse_queue

_TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class BatchMetrics:
    """Counters, a gauge and histograms labelled by queue, model and precision."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ["queue", "model", "precision"]
        self.messages = Counter("embedq_messages_total", "Embed messages handed to the pool.",
                                labels, registry=self.registry)
        self.texts = Counter("embedq_texts_total", "Texts handed to the pool.", labels,
                             registry=self.registry)
        self.batches = Counter("embedq_batches_total", "Batches by outcome (done or lost).",
                               [*labels, "outcome"], registry=self.registry)
        self.in_flight = Gauge("embedq_batches_in_flight", "Batches in pool processes now.",
                               labels, registry=self.registry)
        self.batch_texts = Histogram("embedq_batch_texts", "Texts per batch.", labels,
                                     buckets=_TEXT_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("embedq_batch_seconds", "Time from hand-over to return.",
                                       labels, buckets=_SECONDS_BUCKETS, registry=self.registry)

    @staticmethod
    def labels_for(queue: str) -> dict[str, str]:
        """Label values for a queue (model and precision read from its name when it has them)."""
        model, precision = parse_queue(queue) or ("", "")
        return {"queue": queue, "model": model, "precision": precision}

    def batch_started(self, queue: str, messages: int, texts: int) -> None:
        """A batch went to a pool process."""
        labels = self.labels_for(queue)
        self.messages.labels(**labels).inc(messages)
        self.texts.labels(**labels).inc(texts)
        self.batch_texts.labels(**labels).observe(texts)
        self.in_flight.labels(**labels).inc()

    def batch_ended(self, queue: str, seconds: float, *, lost: bool) -> None:
        """A batch came back (or its pool process died)."""
        labels = self.labels_for(queue)
        self.in_flight.labels(**labels).dec()
        self.batches.labels(**labels, outcome="lost" if lost else "done").inc()
        if not lost:
            self.batch_seconds.labels(**labels).observe(seconds)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Expose ``/metrics`` on a port (a daemon thread of the worker's parent)."""
        start_http_server(port, addr=address, registry=self.registry)
