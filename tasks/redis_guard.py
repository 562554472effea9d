"""A Redis that a job may use but must never wait on: the vector cache, and liveness reads.

Every call has bounded socket timeouts and no client-side retries; a failure is counted, logged
once per outage (not per request, naming what was lost: the cache or the broker's liveness
view), and that Redis is skipped until a backoff (`embedq.tasks.loops.Backoff`, up to
``EMBEDQ_CACHE_BACKOFF_MAX_S``) has passed; the next call after that tries again, so it comes
back by itself when Redis does. Callers get a default value instead of an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from embedq.config.settings import Settings
from embedq.tasks.connections import redis_client
from embedq.tasks.loops import OUTAGES, Backoff

log = structlog.get_logger(__name__)
T = TypeVar("T")
_SKIPPED = {"cache": "serving without the Redis cache",
            "broker": "liveness unknown: routes use their first model"}


def guarded_client(settings: Settings, url: str | None = None) -> redis.Redis:
    """A client for the cache Redis (or ``url``) with the settings' bounded timeouts and no
    retries: for anything that must never hold up a job."""
    return redis_client(
        url or settings.cache,
        master_name=settings.sentinel_master,
        socket_timeout=settings.cache_socket_timeout_s,
        socket_connect_timeout=settings.cache_connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


class RedisGuard:
    """Runs operations on one optional Redis, turning outages into defaults and a backoff.
    ``what`` ("cache" or "broker") names it in the log lines."""

    def __init__(self, client: redis.Redis, *, what: str, backoff_max_s: float) -> None:
        self.client = client
        self.what = what
        self.errors = 0
        self.recoveries = 0  # lets users re-publish what a restarted Redis lost
        self._backoff = Backoff(max_s=backoff_max_s)
        self._retry_at = 0.0
        self._down_since: float | None = None

    @property
    def down(self) -> bool:
        """True while an outage is being waited out."""
        return self._down_since is not None

    def run(self, operation: Callable[[redis.Redis], T], default: T) -> T:
        """``operation(client)``, or ``default`` if Redis failed now or is in backoff."""
        now = time.monotonic()
        if now < self._retry_at:
            return default
        try:
            result = operation(self.client)
        except OUTAGES as exc:
            self._failed(exc, now)
            return default
        if self._down_since is not None:
            log.info(f"{self.what}_redis_recovered", where=self._where(),
                     down_s=round(now - self._down_since, 3), errors=self.errors)
            self._down_since = None
            self._backoff.reset()
            self.recoveries += 1
        return result

    def close(self) -> None:
        """Close the connections (a long-lived process may simply keep them)."""
        self.client.close()

    def _failed(self, exc: BaseException, now: float) -> None:
        self.errors += 1
        self._retry_at = now + self._backoff.next()
        if self._down_since is None:
            self._down_since = now
            log.warning(f"{self.what}_redis_unavailable", where=self._where(), error=repr(exc),
                        note=f"{_SKIPPED.get(self.what, 'skipping it')}; retrying with backoff")
        self.client.connection_pool.disconnect()  # a half-read reply must not be reused

    def _where(self) -> str:
        kwargs = self.client.connection_pool.connection_kwargs
        if kwargs.get("path"):
            return str(kwargs["path"])
        return f"{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db')}"
