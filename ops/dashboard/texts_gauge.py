"""``embedq_queue_texts_waiting``: the texts (not messages) waiting on each queue.

A message carries up to ``EMBEDQ_CHUNK_SIZE`` texts, so autoscalers that size pools by work
waiting (KEDA's Prometheus trigger in the rendered manifests) read this gauge rather than the
list length. A separate collector, so the queue figures of `tasks.queue_stats` keep their one
round trip and this one costs its own (a script summing the messages' texts headers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from embedq.tasks.names import parse_queue
from embedq.tasks.queue_texts import texts_waiting

NAME = "embedq_queue_texts_waiting"
LABELS = ["queue", "model", "precision"]
TextsReader = Callable[[], list[tuple[str, int]]]


def texts_reader(client: redis.Redis, queues: Sequence[str]) -> TextsReader:
    """Reads ``(queue, texts waiting)`` for ``queues`` from the broker when called."""
    return lambda: list(zip(queues, texts_waiting(client, queues), strict=True))


class TextsCollector(Collector):
    """One gauge family, one sample per queue, read when Prometheus scrapes."""

    def __init__(self, read: TextsReader) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        """The texts waiting per queue (estimated from a sample for a long queue)."""
        family = GaugeMetricFamily(
            NAME, "Texts waiting in the queue (the sum of its messages' texts headers).",
            labels=LABELS)
        for queue, texts in self.read():
            model, precision = parse_queue(queue) or ("", "")
            family.add_metric([queue, model, precision], float(texts))
        yield family
