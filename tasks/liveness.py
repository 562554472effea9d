"""Which queues have a live consumer, so a producer can walk a route's fallback chain.

Each worker keeps one entry per queue it consumes in a sorted set (`live_key`): the member is
the worker's id, the score the time the entry expires. A worker refreshes its entries every
``EMBEDQ_LIVENESS_INTERVAL_S`` and removes them on a clean shutdown; a dead or stuck worker's
entries simply expire. A producer asks for all of a chain's queues in one pipelined round trip.

The sets live on the broker Redis: liveness is about who consumes its queues, and the broker
never evicts (the cache Redis may, under allkeys-lfu). Scores are wall-clock seconds, so hosts
need clocks in sync to within a fraction of the entry lifetime (NTP is plenty).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from embedq.tasks.names import live_key

LIFETIMES_PER_INTERVAL = 3


def mark_alive(client: redis.Redis, queues: Sequence[str], worker: str, ttl_s: float) -> None:
    """Refresh ``worker``'s entries for ``queues`` and drop anyone's expired ones."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zadd(live_key(queue), {worker: now + ttl_s})
            pipe.zremrangebyscore(live_key(queue), "-inf", now)
            pipe.expire(live_key(queue), max(1, int(ttl_s * 2)))
        pipe.execute()


def mark_gone(client: redis.Redis, queues: Sequence[str], worker: str) -> None:
    """Remove ``worker``'s entries at once (a clean shutdown)."""
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zrem(live_key(queue), worker)
        pipe.execute()


def live_consumers(client: redis.Redis, queues: Sequence[str]) -> list[int]:
    """How many workers are live on each of ``queues``, in one round trip."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zcount(live_key(queue), now, "+inf")
        return [int(count) for count in pipe.execute()]
