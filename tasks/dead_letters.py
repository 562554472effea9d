"""Dead letters: messages a queue could not serve, kept with the reason for an operator.

A message lands in its queue's dead-letter list (`dead_key`) when it was delivered more than
``EMBEDQ_MAX_DELIVERIES`` times without an acknowledgement (its processing killed the worker
process each time), when it is not a task message at all, or when its body is refused (pickle,
another schema version). Its producer is told at once where the envelope names one. The record
format is the wire's (`embedq.tasks.wire.DeadLetter`). ``embedq dead-letters list|replay|drop``
reads and acts on them; a replay takes the record and pushes its message in one transaction
(``WATCH``/``MULTI``), so a crash can never lose a message between the two.
"""

from __future__ import annotations

import redis

from embedq.tasks.connections import blob_list
from embedq.tasks.names import dead_key, deliveries_key
from embedq.tasks.wire import DeadLetter, message_id


def list_dead(client: redis.Redis, queue: str, limit: int) -> list[DeadLetter]:
    """The newest ``limit`` records of ``queue``, newest first."""
    return [DeadLetter.decode(blob)
            for blob in blob_list(client.lrange(dead_key(queue), 0, limit - 1))]


def count_dead(client: redis.Redis, queue: str) -> int:
    """How many records ``queue`` holds."""
    return int(client.llen(dead_key(queue)))


def replay(client: redis.Redis, queue: str, limit: int) -> int:
    """Send the oldest ``limit`` records' messages again (to the head of their queue), each
    record taken and its message pushed in one transaction. Their delivery counts start over;
    a message that was garbage is garbage again and comes straight back. Returns how many."""
    sent = 0
    key = dead_key(queue)
    with client.pipeline(transaction=True) as pipe:
        while sent < limit:
            pipe.watch(key)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
            blob = pipe.lindex(key, -1)
            if not isinstance(blob, bytes):
                pipe.unwatch()
                break
            raw = DeadLetter.decode(blob).raw
            pipe.multi()
            pipe.rpop(key)
            pipe.hdel(deliveries_key(queue), message_id(raw))
            pipe.rpush(queue, raw)
            try:
                pipe.execute()
            except redis.WatchError:
                continue  # another operator moved the list meanwhile: read it again
            sent += 1
    return sent


def drop(client: redis.Redis, queue: str, limit: int | None) -> int:
    """Forget the oldest ``limit`` records (all for None); returns how many went."""
    records = blob_list(client.lrange(dead_key(queue), 0 if limit is None else -limit, -1))
    with client.pipeline(transaction=True) as pipe:
        for blob in records:
            pipe.hdel(deliveries_key(queue), message_id(DeadLetter.decode(blob).raw))
        if limit is None:
            pipe.delete(dead_key(queue))
        else:
            pipe.ltrim(dead_key(queue), 0, -limit - 1)
        pipe.execute()
    return len(records)
