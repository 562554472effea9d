"""How a queue is doing, read from the broker in one round trip: what autoscalers and alerts use.

``depth`` is the list length (KEDA's redis scaler reads the same), ``oldest_age_s`` comes from
the enqueue time embedq's producer writes into every message (None for an empty queue or a
message from another producer), ``consumers`` counts live consumer processes, ``unacked`` the
messages claimed and not yet answered, ``dead_letters`` what waits for an operator.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from embedq.config.errors import PayloadError
from embedq.tasks.names import dead_key, deliveries_key, live_key
from embedq.tasks.wire import open_envelope


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue's figures at one moment."""

    queue: str
    depth: int
    oldest_age_s: float | None
    consumers: int
    unacked: int
    dead_letters: int


def _age(raw: bytes | None, now: float) -> float | None:
    if raw is None:
        return None
    try:
        enqueued = open_envelope(raw).enqueued_at
    except PayloadError:
        return None
    return None if enqueued is None else max(0.0, now - enqueued)


def queue_stats(client: redis.Redis, queues: Sequence[str]) -> list[QueueStats]:
    """Figures for each of ``queues``, in order, in one pipelined round trip."""
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue)
            pipe.lindex(queue, -1)
            pipe.zcount(live_key(queue), now, "+inf")
            pipe.hlen(deliveries_key(queue))
            pipe.llen(dead_key(queue))
        replies = pipe.execute()
    stats = []
    for index, queue in enumerate(queues):
        depth, oldest, consumers, unacked, dead = replies[index * 5:index * 5 + 5]
        stats.append(QueueStats(queue, int(depth), _age(oldest, now), int(consumers),
                                int(unacked), int(dead)))
    return stats
