"""Prometheus metrics of the worker's batches, exported correctly from every pool process.

Batches run in the pool processes, so that is where they are counted. prometheus_client's
multiprocess mode keeps each process's values in files of one folder (``PROMETHEUS_MULTIPROC_DIR``;
a fresh one per worker unless the operator sets it) and the parent's ``/metrics`` adds them up.
That folder must be known before prometheus_client is first imported, so `prepare` runs at the
start of `create_worker_app` and this module imports prometheus_client only inside functions.
Nothing here runs unless ``EMBEDQ_METRICS_PORT`` is set. The parent also reports the resident
memory of itself and its pool, and advertises where its ``/metrics`` listens (`Exporter`,
through `embedq.tasks.metrics_endpoints`), which is how ``embedq dashboard`` and ``embedq eval``
find it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import redis

from embedq.config.settings import Settings
from embedq.tasks.cache_codec import TierStats
from embedq.tasks.connections import redis_client
from embedq.tasks.metrics_endpoints import publish_endpoint, withdraw_endpoint
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
    enqueued_at: tuple[float, ...]  # wall clock, per message that says (embedq's producer)
    claimed_at: float
    answered_at: float = 0.0  # set once the replies are written
    expired: int = 0  # texts dropped uncomputed: their callers had left or cancelled
    late: int = 0  # texts computed, but answered after their caller's deadline


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
        self.failed = Counter("embedq_messages_failed_total", "Messages answered with an error.",
                              labels)
        self.expired = Counter("embedq_expired_texts_total", "Texts dropped uncomputed: their "
                               "callers' deadlines had passed or they cancelled.", labels)
        self.late = Counter("embedq_late_texts_total", "Texts computed but answered after their "
                            "caller's deadline.", labels)
        self.request = Histogram("embedq_request_seconds", "Enqueue to reply written, per message.",
                                 labels, buckets=_SECONDS_BUCKETS)
        self.cache = Counter("embedq_cache_lookups_total", "Cache lookups by tier and result.",
                             [*labels, "tier", "result"])
        self._cache_seen: dict[tuple[str, str], int] = {}

    def observe(self, facts: BatchFacts) -> None:
        """Count one batch."""
        model, precision = parse_queue(facts.queue) or ("", "")
        labels = {"queue": facts.queue, "model": model, "precision": precision}
        self.messages.labels(**labels).inc(facts.messages)
        self.texts.labels(**labels).inc(facts.texts)
        self.expired.labels(**labels).inc(facts.expired)
        self.late.labels(**labels).inc(facts.late)
        if not facts.messages:
            return  # a batch whose every message was dropped
        outcome = "failed" if facts.failed == facts.messages else "done"
        self.batches.labels(**labels, outcome=outcome).inc()
        self.batch_texts.labels(**labels).observe(facts.texts)
        self.batch_seconds.labels(**labels).observe(facts.seconds)
        self.failed.labels(**labels).inc(facts.failed)
        for enqueued in facts.enqueued_at:
            self.queue_wait.labels(**labels).observe(max(0.0, facts.claimed_at - enqueued))
            self.request.labels(**labels).observe(max(0.0, facts.answered_at - enqueued))

    def observe_cache(self, queue: str, tiers: Mapping[str, TierStats]) -> None:
        """Count what this process's cache tiers did since the last call (hits and misses)."""
        model, precision = parse_queue(queue) or ("", "")
        for tier, stats in tiers.items():
            for result, total in (("hit", stats.hits), ("miss", stats.misses)):
                grown = total - self._cache_seen.get((tier, result), 0)
                self._cache_seen[(tier, result)] = total
                if grown > 0:
                    self.cache.labels(queue=queue, model=model, precision=precision, tier=tier,
                                      result=result).inc(grown)


def worker_rss() -> int:
    """Resident bytes of this process and all its children (the pool)."""
    me = psutil.Process()
    total = int(me.memory_info().rss)
    for child in me.children(recursive=True):
        try:
            total += int(child.memory_info().rss)
        except psutil.Error:
            continue  # a pool process that exited between listing and reading
    return total


def _memory_collector(queues: Sequence[str]) -> Any:
    """``embedq_worker_memory_bytes`` per queue served: the parent's and its pool's RSS."""
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector

    class MemoryCollector(Collector):
        def collect(self) -> Iterator[Metric]:
            family = GaugeMetricFamily("embedq_worker_memory_bytes",
                                       "Resident memory of the worker and its pool processes.",
                                       labels=["queue", "model", "precision"])
            rss = float(worker_rss())
            for queue in queues:
                model, precision = parse_queue(queue) or ("", "")
                family.add_metric([queue, model, precision], rss)
            yield family

    return MemoryCollector()


def serve(port: int, address: str, queues: Sequence[str] = ()) -> Any:
    """Serve the sum over this worker's processes at ``/metrics`` (a thread of the parent)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_memory_collector(list(queues)))
    return start_http_server(port, addr=address, registry=registry)


class Exporter:
    """The worker parent's ``/metrics``, advertised in the broker Redis while it runs.

    The advertisement is refreshed every liveness interval and lives three of them, like the
    queue liveness entries, so a worker that dies drops out of the dashboard by itself.
    """

    def __init__(self, settings: Settings, queues: Sequence[str]) -> None:
        self.settings = settings
        self.queues = list(queues)
        self.url: str | None = None
        self._client = redis_client(settings.broker, master_name=settings.sentinel_master,
                                    socket_timeout=2.0)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._advertise, name="embedq-metrics",
                                        daemon=True)

    def start(self, port: int) -> str:
        """Serve on ``port`` and start advertising; returns the advertised URL."""
        address = self.settings.metrics_address
        serve(port, address, self.queues)
        host = socket.gethostname() if address in ("0.0.0.0", "::") else address
        self.url = f"http://{host}:{port}/metrics"
        self._publish()  # advertised before start() returns, not whenever the thread runs
        self._thread.start()
        return self.url

    def _publish(self) -> None:
        # The broker away is no reason to stop a worker: the next beat tries again.
        with contextlib.suppress(redis.RedisError):
            publish_endpoint(self._client, str(self.url),
                             ttl_s=3 * self.settings.liveness_interval_s)

    def _advertise(self) -> None:
        while not self._stopped.wait(self.settings.liveness_interval_s):
            self._publish()

    def stop(self) -> None:
        """Stop advertising (the HTTP server thread ends with the process)."""
        self._stopped.set()
        if self.url is not None:
            with contextlib.suppress(redis.RedisError):
                withdraw_endpoint(self._client, self.url)
        self._client.close()
