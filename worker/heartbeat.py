"""A worker's liveness heartbeat: a thread in the worker's main process (see `tasks.liveness`).

It starts once the worker is ready (its models checked, and for a solo pool loaded) and is never
started by a worker whose model could not load, so producers only fall back past a queue that
truly has nobody serving it. Redis problems are absorbed by the same guard the cache uses: a
missed beat never stops a worker.
"""

from __future__ import annotations

import os
import socket
import threading

import structlog

from embedq.config.settings import Settings
from embedq.tasks.cache_guard import CacheGuard, cache_client
from embedq.tasks.liveness import LIFETIMES_PER_INTERVAL, mark_alive, mark_gone

log = structlog.get_logger(__name__)


class Heartbeat:
    """Refreshes this worker's entries for its queues until stopped."""

    def __init__(self, settings: Settings, queues: list[str]) -> None:
        self.queues = queues
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.interval_s = settings.liveness_interval_s
        self._guard = CacheGuard(cache_client(settings, settings.broker),
                                 backoff_max_s=settings.cache_backoff_max_s)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedq-heartbeat", daemon=True)

    def beat(self) -> None:
        """Say once that this worker consumes its queues."""
        ttl = self.interval_s * LIFETIMES_PER_INTERVAL
        self._guard.run(lambda client: mark_alive(client, self.queues, self.worker, ttl), None)

    def start(self) -> None:
        """Beat now (so a producer sees the worker as soon as this returns), then periodically."""
        self.beat()
        self._thread.start()
        log.info("heartbeat_started", queues=self.queues, worker=self.worker,
                 interval_s=self.interval_s)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.beat()

    def stop(self) -> None:
        """Stop beating and remove the entries, so producers move on at once."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 1)
        self._guard.run(lambda client: mark_gone(client, self.queues, self.worker), None)
        self._guard.close()
