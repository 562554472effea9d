"""Where the workers' ``/metrics`` listen: advertised in the broker Redis, found by the tools.

A worker parent with ``EMBEDQ_METRICS_PORT`` set advertises its exporter's URL
(`embedq.worker.metrics.Exporter`); ``embedq dashboard`` and ``embedq eval`` read the list.
Each entry is a member of one sorted set scored by the time it stops counting, so a worker that
dies without withdrawing drops out by itself. Both sides use this module, which needs only a
Redis client: a tool that reads the list imports no worker code.
"""

from __future__ import annotations

import time

import redis

from embedq.tasks.names import METRICS_ENDPOINTS_KEY


def publish_endpoint(client: redis.Redis, url: str, ttl_s: float) -> None:
    """Say for ``ttl_s`` seconds that a worker's ``/metrics`` is at ``url``."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        pipe.zadd(METRICS_ENDPOINTS_KEY, {url: now + ttl_s})
        pipe.zremrangebyscore(METRICS_ENDPOINTS_KEY, "-inf", now)
        pipe.execute()


def withdraw_endpoint(client: redis.Redis, url: str) -> None:
    """A clean shutdown: stop advertising ``url`` at once."""
    client.zrem(METRICS_ENDPOINTS_KEY, url)


def metrics_endpoints(client: redis.Redis) -> list[str]:
    """The ``/metrics`` URLs of the workers that are up now."""
    found = client.zrangebyscore(METRICS_ENDPOINTS_KEY, time.time(), "+inf")
    return sorted(raw.decode() if isinstance(raw, bytes) else str(raw) for raw in found)
