"""Reading the workers' ``/metrics`` into per-queue totals the page can turn into rates.

Workers publish where their exporter listens (`embedq.tasks.metrics_endpoints`); the
sampler fetches each one with a short timeout, so a stuck worker costs one empty reading, not a
stuck page. Only embedq's own families are kept, summed per queue.
"""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from prometheus_client.parser import text_string_to_metric_families

from embedq.tasks.metrics_endpoints import metrics_endpoints

SCRAPE_TIMEOUT_S = 1.0


@dataclass
class Totals:
    """Cumulative figures of one queue on one worker (counters, histogram buckets, gauges)."""

    texts: float = 0.0
    expired: float = 0.0  # dropped uncomputed: their callers had left
    failed: float = 0.0
    batch_texts_sum: float = 0.0
    batches: float = 0.0
    latency: dict[float, float] = field(default_factory=dict)
    queue_wait: dict[float, float] = field(default_factory=dict)
    cache: dict[tuple[str, str], float] = field(default_factory=dict)
    memory_bytes: float = 0.0


def _add_bucket(buckets: dict[float, float], upper: str, value: float) -> None:
    bound = float("inf") if upper == "+Inf" else float(upper)
    buckets[bound] = buckets.get(bound, 0.0) + value


def _cache(totals: Totals, labels: dict[str, str], value: float) -> None:
    key = (labels["tier"], labels["result"])
    totals.cache[key] = totals.cache.get(key, 0.0) + value


def _adder(name: str) -> Callable[[Totals, dict[str, str], float], None]:
    def add(totals: Totals, labels: dict[str, str], value: float) -> None:
        setattr(totals, name, getattr(totals, name) + value)
    return add


# sample name -> how it adds to a queue's totals
_READERS: dict[str, Callable[[Totals, dict[str, str], float], None]] = {
    "embedq_texts_total": _adder("texts"),
    "embedq_expired_texts_total": _adder("expired"),
    "embedq_messages_failed_total": _adder("failed"),
    "embedq_batch_texts_sum": _adder("batch_texts_sum"),
    "embedq_batch_texts_count": _adder("batches"),
    "embedq_worker_memory_bytes": _adder("memory_bytes"),
    "embedq_request_seconds_bucket": lambda t, labels, v: _add_bucket(t.latency, labels["le"], v),
    "embedq_queue_wait_seconds_bucket":
        lambda t, labels, v: _add_bucket(t.queue_wait, labels["le"], v),
    "embedq_cache_lookups_total": _cache,
}


def parse(text: str) -> dict[str, Totals]:
    """Per-queue totals from one exporter's text."""
    found: dict[str, Totals] = defaultdict(Totals)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            reader = _READERS.get(sample.name)
            queue = sample.labels.get("queue")
            if reader is not None and queue is not None:
                reader(found[queue], sample.labels, float(sample.value))
    return dict(found)


def scrape(url: str) -> dict[str, Totals] | None:
    """One worker's totals, or None when it does not answer in time."""
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
            return parse(response.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def worker_totals(client: redis.Redis) -> dict[str, dict[str, Totals]]:
    """Every advertised worker's per-queue totals, keyed by its ``/metrics`` URL."""
    found: dict[str, dict[str, Totals]] = {}
    for url in metrics_endpoints(client):
        totals = scrape(url)
        if totals is not None:
            found[url] = totals
    return found


def queue_memory(client: redis.Redis, queue: str) -> int | None:
    """Resident memory of the workers serving ``queue`` (None when none exports metrics)."""
    parts = [q[queue].memory_bytes for q in worker_totals(client).values() if queue in q]
    return int(sum(parts)) if parts else None
