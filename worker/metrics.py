"""Prometheus metrics of the worker's batches, exported correctly from every pool process.

Batches run in the pool processes, so that is where they are counted. prometheus_client's
multiprocess mode keeps each process's values in files of one folder (``PROMETHEUS_MULTIPROC_DIR``;
a fresh one per worker unless the operator sets it) and the parent's ``/metrics`` adds them up.
That folder must be known before prometheus_client is first imported, so `prepare` runs at the
start of `create_worker_app` and this module imports prometheus_client only inside functions.
Nothing here runs unless ``EMBEDQ_METRICS_PORT`` is set.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

from embedq.config.settings import Settings
from embedq.tasks.names import parse_queue

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True, slots=True)
class BatchFacts:
    """What one served batch did, as the consumer reports it."""

    queue: str
    messages: int
    texts: int
    failed: int
    seconds: float
    queue_waits_s: tuple[float, ...]


def prepare(settings: Settings) -> None:
    """Choose the multiprocess folder before any metric exists (call before forking)."""
    if settings.metrics_port is not None and MULTIPROC_ENV not in os.environ:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="embedq-metrics-")


class BatchMetrics:
    """Counters and histograms labelled by queue, model and precision (one per process)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        labels = ["queue", "model", "precision"]
        self.messages = Counter("embedq_messages_total", "Embed messages served.", labels)
        self.texts = Counter("embedq_texts_total", "Texts served.", labels)
        self.batches = Counter("embedq_batches_total", "Batches by outcome (done or failed).",
                               [*labels, "outcome"])
        self.batch_texts = Histogram("embedq_batch_texts", "Texts per batch.", labels,
                                     buckets=_TEXT_BUCKETS)
        self.batch_seconds = Histogram("embedq_batch_seconds", "Time to embed a batch.", labels,
                                       buckets=_SECONDS_BUCKETS)
        self.queue_wait = Histogram("embedq_queue_wait_seconds", "Enqueue to claim, per message.",
                                    labels, buckets=_SECONDS_BUCKETS)

    def observe(self, facts: BatchFacts) -> None:
        """Count one batch."""
        model, precision = parse_queue(facts.queue) or ("", "")
        labels = {"queue": facts.queue, "model": model, "precision": precision}
        self.messages.labels(**labels).inc(facts.messages)
        self.texts.labels(**labels).inc(facts.texts)
        outcome = "failed" if facts.failed == facts.messages else "done"
        self.batches.labels(**labels, outcome=outcome).inc()
        self.batch_texts.labels(**labels).observe(facts.texts)
        self.batch_seconds.labels(**labels).observe(facts.seconds)
        for wait in facts.queue_waits_s:
            self.queue_wait.labels(**labels).observe(wait)


def serve(port: int, address: str) -> Any:
    """Serve the sum over this worker's processes at ``/metrics`` (a thread of the parent)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return start_http_server(port, addr=address, registry=registry)
