"""Which queues have a live consumer, so a producer can walk a route's fallback chain.

Each consumer (one per worker process and queue) keeps an entry in the queue's sorted set
(`live_key`): the member is the consumer's id, the score the time the entry expires. Consumers
refresh their entries every ``EMBEDQ_LIVENESS_INTERVAL_S`` and remove them on a clean shutdown;
a dead or stuck consumer's entry expires, and stays in the set (scored in the past) until a live
consumer has put the dead one's claimed messages back on the queue (`worker.claims`). So the set
never expires as a whole and an expired entry is never dropped blindly. A producer asks for all
of a chain's queues in one pipelined round trip.

The sets live on the broker Redis: liveness is about who consumes its queues, and the broker
never evicts (the cache Redis may, under allkeys-lfu). Scores are wall-clock seconds, so hosts
need clocks in sync to within a fraction of the entry lifetime (NTP is plenty).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from embedq.tasks.names import live_key, rate_key

LIFETIMES_PER_INTERVAL = 3


def mark_alive(client: redis.Redis, entries: Sequence[tuple[str, str]], ttl_s: float) -> None:
    """Refresh the ``(queue, consumer)`` entries for another ``ttl_s`` seconds."""
    expires = time.time() + ttl_s
    with client.pipeline(transaction=False) as pipe:
        for queue, consumer in entries:
            pipe.zadd(live_key(queue), {consumer: expires})
        pipe.execute()


def mark_gone(client: redis.Redis, entries: Sequence[tuple[str, str]]) -> None:
    """Remove the ``(queue, consumer)`` entries at once, and the service rates they published
    (a clean shutdown, nothing claimed)."""
    with client.pipeline(transaction=False) as pipe:
        for queue, consumer in entries:
            pipe.zrem(live_key(queue), consumer)
            pipe.hdel(rate_key(queue), consumer)
        pipe.execute()


def live_consumers(client: redis.Redis, queues: Sequence[str]) -> list[int]:
    """How many consumers are live on each of ``queues``, in one round trip."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zcount(live_key(queue), now, "+inf")
        return [int(count) for count in pipe.execute()]
