"""The dashboard's memory: a reading every few seconds, kept for the last minutes.

One thread reads every queue's figures from Redis (one pipelined round trip per broker) and every
worker's ``/metrics``, and keeps the readings in a ring. The page's table compares the newest
reading with the one a minute earlier; its charts compare each reading with the one
``CHART_STEP`` readings before it, so short spikes are smoothed but not hidden.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from embedq.ops.dashboard.rates import combine, difference, hit_rates, quantile
from embedq.ops.dashboard.scrape import Totals
from embedq.tasks.queue_stats import QueueStats

RATE_WINDOW_S = 60.0
CHART_STEP = 5


@dataclass(frozen=True)
class Reading:
    """Everything the page shows, at one moment; ``points`` are its chart values per queue
    (depth, texts/s, latency p95), computed once when the reading is taken."""

    time: float
    stats: list[QueueStats]
    workers: dict[str, dict[str, Totals]]  # endpoint -> queue -> totals
    points: dict[str, tuple[int, float | None, float | None, int]]


@dataclass(frozen=True)
class Sources:
    """Where readings come from; functions, so tests and the CLI wire the same sampler."""

    queue_stats: Callable[[], list[QueueStats]]
    worker_totals: Callable[[], dict[str, dict[str, Totals]]]
    evaluation: Callable[[], list[dict[str, Any]]]
    routes_of: dict[str, list[str]]  # queue -> the routes that send to it
    brokers_of: dict[str, str] = field(default_factory=dict)  # queue -> its broker, no password


def _window(old: Reading, new: Reading, queue: str) -> Totals:
    """Per-queue figures between two readings, summed over workers."""
    parts = [
        difference(queues[queue], old.workers.get(url, {}).get(queue))
        for url, queues in new.workers.items() if queue in queues
    ]
    return combine(parts)


def _rates(old: Reading | None, new: Reading, queue: str) -> dict[str, Any]:
    """The page's per-queue worker figures between two readings (None where nobody reports)."""
    reporting = [q[queue] for q in new.workers.values() if queue in q]
    span = new.time - old.time if old else 0.0
    if not reporting or old is None or span <= 0:
        return {"texts_per_s": None, "expired_per_s": None, "failed_per_min": None,
                "batch_texts_mean": None,
                "latency_p50_s": None, "latency_p95_s": None, "queue_wait_p95_s": None,
                "cache_hit_rate": {},
                "memory_bytes": combine(reporting).memory_bytes if reporting else None}
    window = _window(old, new, queue)
    return {
        "texts_per_s": window.texts / span,
        "expired_per_s": window.expired / span,
        "failed_per_min": window.failed * 60 / span,
        "batch_texts_mean": window.batch_texts_sum / window.batches if window.batches else None,
        "latency_p50_s": quantile(0.5, window.latency),
        "latency_p95_s": quantile(0.95, window.latency),
        "queue_wait_p95_s": quantile(0.95, window.queue_wait),
        "cache_hit_rate": hit_rates(window.cache),
        "memory_bytes": combine(reporting).memory_bytes,
    }


class Sampler:
    """Takes readings on a daemon thread; `figures()` is what ``/api/figures`` returns."""

    def __init__(self, sources: Sources, *, interval_s: float = 2.0,
                 history_s: float = 900.0) -> None:
        self.sources = sources
        self.interval_s = interval_s
        self.readings: deque[Reading] = deque(maxlen=max(2, int(history_s / interval_s)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="embedq-sampler", daemon=True)

    def read_once(self) -> None:
        """Take one reading now."""
        stats, workers = self.sources.queue_stats(), self.sources.worker_totals()
        with self._lock:
            earlier = self.readings[-CHART_STEP] if len(self.readings) >= CHART_STEP else (
                self.readings[0] if self.readings else None)
        bare = Reading(time.time(), stats, workers, {})
        points = {}
        for item in stats:
            rates = _rates(earlier, bare, item.queue)
            points[item.queue] = (item.depth, rates["texts_per_s"], rates["latency_p95_s"],
                                  item.consumers)
        with self._lock:
            self.readings.append(Reading(bare.time, stats, workers, points))

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.read_once()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        """Start the reading thread (the first reading is taken at once)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the reading thread."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _before(self, readings: list[Reading], index: int, seconds: float) -> Reading | None:
        """The newest reading ``seconds`` or more before ``readings[index]`` (else the oldest)."""
        cutoff = readings[index].time - seconds
        older = [r for r in readings[:index] if r.time <= cutoff]
        return older[-1] if older else (readings[0] if index else None)

    @staticmethod
    def _series(readings: list[Reading]) -> dict[str, Any]:
        queues = sorted({queue for reading in readings for queue in reading.points})
        series: dict[str, Any] = {"t": [r.time for r in readings], "queues": {}}
        for queue in queues:
            points = [r.points.get(queue, (None, None, None, None)) for r in readings]
            series["queues"][queue] = {"depth": [p[0] for p in points],
                                       "texts_per_s": [p[1] for p in points],
                                       "latency_p95_s": [p[2] for p in points],
                                       # worker processes serving: the pool size over time
                                       "consumers": [p[3] for p in points]}
        return series

    def figures(self) -> dict[str, Any]:
        """The page's data: per-queue table, chart series, latest evaluation results."""
        with self._lock:
            readings = list(self.readings)
        if not readings:
            return {"time": time.time(), "queues": [], "series": {"t": [], "queues": {}},
                    "evaluation": self.sources.evaluation()}
        newest = readings[-1]
        before = self._before(readings, len(readings) - 1, RATE_WINDOW_S)
        table = [
            {**asdict(stats), "routes": self.sources.routes_of.get(stats.queue, []),
             "broker": self.sources.brokers_of.get(stats.queue, ""),
             **_rates(before, newest, stats.queue)}
            for stats in newest.stats
        ]
        return {"time": newest.time, "queues": table, "series": self._series(readings),
                "evaluation": self.sources.evaluation()}
