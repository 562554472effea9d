"""The queue gauges on the dashboard's ``/metrics``: what autoscalers and alerts watch.

A custom collector reads every queue's figures from Redis when Prometheus scrapes, in one
pipelined round trip, so the gauges are never older than the scrape and the dashboard needs no
timer of its own for them. Workers export their own process figures; these are the queue's,
which no single worker can see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from embedq.ops.dashboard.texts_gauge import TextsCollector, TextsReader
from embedq.tasks.names import parse_queue
from embedq.tasks.queue_stats import QueueStats

LABELS = ["queue", "model", "precision"]
GAUGES: dict[str, tuple[str, Callable[[QueueStats], float]]] = {
    "embedq_queue_depth": ("Messages waiting in the queue.", lambda s: s.depth),
    "embedq_queue_oldest_age_seconds": (
        "Age of the oldest waiting message (0 when the queue is empty).",
        lambda s: s.oldest_age_s or 0.0),
    "embedq_queue_consumers": ("Live workers consuming the queue.", lambda s: s.consumers),
    "embedq_queue_unacked": ("Messages claimed by a worker and not yet acknowledged.",
                               lambda s: s.unacked),
    "embedq_queue_dead_letters": ("Messages in the queue's dead-letter list.",
                                  lambda s: s.dead_letters),
}


class QueueCollector(Collector):
    """Gauges per queue, read when collected."""

    def __init__(self, read: Callable[[], list[QueueStats]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        """One family per gauge, one sample per queue."""
        stats = self.read()
        for name, (doc, value) in GAUGES.items():
            family = GaugeMetricFamily(name, doc, labels=LABELS)
            for item in stats:
                model, precision = parse_queue(item.queue) or ("", "")
                family.add_metric([item.queue, model, precision], float(value(item)))
            yield family


def queue_registry(read: Callable[[], list[QueueStats]],
                   read_texts: TextsReader = list) -> CollectorRegistry:
    """A registry holding only the queue gauges (texts waiting among them)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(read))
    registry.register(TextsCollector(read_texts))
    return registry
