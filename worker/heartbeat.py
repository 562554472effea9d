"""A worker process's liveness heartbeat: a thread that keeps its consumers' entries fresh.

Every consumer of this process has an entry in its queue's liveness set (see `tasks.liveness`):
producers count them to walk fallback chains and size their windows, and other consumers use an
expired entry to put a dead consumer's claimed messages back on the queue. The thread runs beside
the forward passes (torch and ONNX Runtime release the GIL), so a long batch never looks like a
dead process. It starts only once the process's models are loaded, and Redis problems are
absorbed by the cache guard: a missed beat never stops a worker.
"""

from __future__ import annotations

import threading

import structlog

from embedq.config.settings import Settings
from embedq.tasks.liveness import LIFETIMES_PER_INTERVAL, mark_alive, mark_gone
from embedq.tasks.redis_guard import RedisGuard, guarded_client

log = structlog.get_logger(__name__)


class Heartbeat:
    """Refreshes ``(queue, consumer)`` liveness entries until stopped."""

    def __init__(self, settings: Settings, entries: list[tuple[str, str]]) -> None:
        self.entries = entries
        self.interval_s = settings.liveness_interval_s
        self._guard = RedisGuard(guarded_client(settings, settings.broker), what="broker",
                                 backoff_max_s=settings.cache_backoff_max_s)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedq-heartbeat", daemon=True)

    def beat(self) -> None:
        """Say once that these consumers are alive."""
        ttl = self.interval_s * LIFETIMES_PER_INTERVAL
        self._guard.run(lambda client: mark_alive(client, self.entries, ttl), None)

    def start(self) -> None:
        """Beat now (producers see the consumers when this returns), then periodically."""
        self.beat()
        self._thread.start()
        log.info("heartbeat_started", consumers=[c for _, c in self.entries],
                 interval_s=self.interval_s)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.beat()

    def stop(self, *, withdraw: bool) -> None:
        """Stop beating; with ``withdraw`` remove the entries, so producers move on at once
        (only when nothing is left in flight: otherwise the entry must expire to be swept)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 1)
        if withdraw:
            self._guard.run(lambda client: mark_gone(client, self.entries), None)
        self._guard.close()
