"""Dead letters: messages a queue could not serve, kept with the reason for an operator.

A message lands in its queue's dead-letter list (`dead_key`) when it was delivered more than
``EMBEDQ_MAX_DELIVERIES`` times without an acknowledgement (its processing killed the worker
process each time), when it is not a task message at all, or when its body is refused (pickle,
another schema version). Its producer is told at once where the envelope names one. Records are
msgpack arrays ``[version, reason, queue, at, deliveries, message bytes]``, binary-safe, so even
garbage is kept exactly. ``embedq dead-letters list|replay|drop`` reads and acts on them.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

import msgpack
import redis

from embedq.tasks.connections import blob_list
from embedq.tasks.names import dead_key, deliveries_key

RECORD_VERSION = 1
DEAD_MARK = b"dead"  # a message's deliveries entry once it is dead-lettered


def message_id(raw: bytes) -> str:
    """The id a message's deliveries are counted under (what Lua's ``redis.sha1hex`` gives)."""
    return hashlib.sha1(raw).hexdigest()  # an identifier, not a signature


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-letter record: the message as it was on the queue, and why it is here."""

    reason: str
    queue: str
    at: float
    deliveries: int
    raw: bytes

    def encode(self) -> bytes:
        """The record as the claim script writes it."""
        packed: bytes = msgpack.packb([RECORD_VERSION, self.reason, self.queue, self.at,
                                       self.deliveries, self.raw], use_bin_type=True)
        return packed


def read_record(blob: bytes) -> DeadLetter:
    """Parse a record; one of another version is shown as such, never guessed at."""
    with contextlib.suppress(ValueError, TypeError, AttributeError, msgpack.UnpackException):
        row = msgpack.unpackb(blob, raw=True)
        if isinstance(row, list) and len(row) == 6 and row[0] == RECORD_VERSION:
            _, reason, queue, at, deliveries, raw = row
            return DeadLetter(reason.decode(), queue.decode(), float(at), int(deliveries),
                              bytes(raw))
    return DeadLetter("unreadable dead-letter record", "", 0.0, 0, blob)


def list_dead(client: redis.Redis, queue: str, limit: int) -> list[DeadLetter]:
    """The newest ``limit`` records of ``queue``, newest first."""
    return [read_record(blob)
            for blob in blob_list(client.lrange(dead_key(queue), 0, limit - 1))]


def count_dead(client: redis.Redis, queue: str) -> int:
    """How many records ``queue`` holds."""
    return int(client.llen(dead_key(queue)))


def replay(client: redis.Redis, queue: str, limit: int) -> int:
    """Send the oldest ``limit`` records' messages again (to the head of their queue).

    Their delivery counts start over; a message that was garbage is garbage again and comes
    straight back. Returns how many were sent.
    """
    sent = 0
    for _ in range(limit):
        blob = client.rpop(dead_key(queue))
        if not isinstance(blob, bytes):
            break
        record = read_record(blob)
        with client.pipeline(transaction=True) as pipe:
            pipe.hdel(deliveries_key(queue), message_id(record.raw))
            pipe.rpush(queue, record.raw)
            pipe.execute()
        sent += 1
    return sent


def drop(client: redis.Redis, queue: str, limit: int | None) -> int:
    """Forget the oldest ``limit`` records (all for None); returns how many went."""
    records = blob_list(client.lrange(dead_key(queue), 0 if limit is None else -limit, -1))
    with client.pipeline(transaction=True) as pipe:
        for blob in records:
            pipe.hdel(deliveries_key(queue), message_id(read_record(blob).raw))
        if limit is None:
            pipe.delete(dead_key(queue))
        else:
            pipe.ltrim(dead_key(queue), 0, -limit - 1)
        pipe.execute()
    return len(records)
