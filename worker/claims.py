"""Taking messages off a queue without ever losing one: claim, acknowledge, give back.

kombu's Redis transport pops a message and records it as unacknowledged in two steps, so a
worker killed between them loses the message, and one non-JSON entry kills the worker in the
pop itself. embedq's consumers use atomic commands and scripts instead (the dramatiq broker's
design, on Celery's own message format); each script is a ``.lua`` file beside this module,
registered once per connection, and takes every name it needs as an argument:

* **wait**: ``BLMOVE queue inflight`` blocks until a message is there and moves it, in one
  atomic step, into this consumer's own in-flight list: at every instant a message is either
  on a queue or in exactly one in-flight list;
* **claim** (``claim.lua``): moves more messages until a budget of texts is reached, interactive
  work first and bulk work after it, oldest first (or, with ``EMBEDQ_LIFO_AFTER_S`` set, newest
  first once the oldest has waited that long: adaptive LIFO), in a fixed few commands however
  many it takes; clears messages whose callers have all left; counts each message's deliveries
  (keyed by the SHA-1 of its bytes) and marks one delivered more than ``max_deliveries`` times
  (its processing killed the worker process each time) as dead. A consumer whose last claim
  found both lists empty blocks at once instead of claiming first, and passes what the wait
  moved to the next claim;
* **ack**: the replies, the deliveries counter's removal and the message's removal from the
  in-flight list are one atomic script call (see `worker.replies`);
* **restore** (``restore.lua``): a dead consumer's in-flight messages go back to the head of
  the list they came from, and its liveness entry goes. Dead means its liveness entry expired,
  or (on the same host, at once) its process no longer exists. When its whole worker died, the
  deliveries are refunded: only a message whose pool process died under a living worker is a
  poison suspect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib.resources import files
from typing import Literal, cast

import msgpack
import redis

from embedq.tasks.connections import blob_list
from embedq.tasks.names import (
    backlog_key,
    bulk_queue,
    cancel_key,
    dead_key,
    deliveries_key,
    inflight_key,
    live_key,
    rate_key,
)
from embedq.tasks.wire import (
    DEAD_MARK,
    DEADLINE_HEADER,
    ENQUEUED_HEADER,
    RECORD_VERSION,
    TEXTS_HEADER,
    message_id,
)
from embedq.worker.batching import BatchPolicy
from embedq.worker.processes import gone_locally, worker_gone_locally

CLAIM_LUA = files(__package__).joinpath("claim.lua").read_text(encoding="utf-8")
RESTORE_LUA = files(__package__).joinpath("restore.lua").read_text(encoding="utf-8")
State = Literal["live", "expired", "dead", "redead"]
_CLEAR_MOST = 256  # expired messages cleared per claim: bounds one script's run time


@dataclass(frozen=True, slots=True)
class Claimed:
    """One claimed message: its bytes, how often it has been delivered, and what to do."""

    raw: bytes
    deliveries: int
    state: State = "live"
    texts: int = 1  # from the envelope's header, read by the claim script
    cancel: bytes = b""  # its callers' cancellation mark, if any (see `cancelled_rows`)
    bulk: bool = False  # taken from the bulk list

    @property
    def dead(self) -> bool:
        """True when it must go to the dead letters instead of being served."""
        return self.state in ("dead", "redead")


def cancelled_rows(mark: bytes) -> list[int] | None:
    """The rows a cancellation mark names (an empty list: every row), None for no mark."""
    if not mark:
        return None
    try:
        rows = msgpack.unpackb(mark)
    except (ValueError, msgpack.UnpackException):
        return []  # an unreadable mark still says the callers left
    return [r for r in rows if isinstance(r, int)] if isinstance(rows, list) else []


class QueueClaims:
    """The Redis side of one consumer on one queue (its interactive and bulk lists)."""

    def __init__(self, client: redis.Redis, queue: str, consumer: str) -> None:
        self.client = client
        self.queue = queue
        self.consumer = consumer
        self.inflight = inflight_key(queue, consumer)
        self._claim = client.register_script(CLAIM_LUA)
        self._restore = client.register_script(RESTORE_LUA)
        self._moved: list[bytes] = []  # what blocking waits moved in flight, not yet claimed
        #: True when the last claim saw the interactive and the bulk list empty: the consumer
        #: can block at once instead of claiming again first.
        self.drained = False

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` for an interactive message and move it in flight; False if
        none came (bulk messages are found by the next claim, which never blocks: while bulk
        work flows the consumer waits only briefly, see `Consumer`)."""
        moved = self.client.blmove(self.queue, self.inflight, timeout_s,  # type: ignore[arg-type]
                                   "RIGHT", "LEFT")  # redis-py says int; Redis takes seconds
        if moved is None:
            return False
        self._moved += blob_list([moved])  # the next claim counts its delivery
        return True

    def held(self) -> list[Claimed]:
        """What this consumer's in-flight list still holds (after an interrupted batch), with
        the delivery counts already recorded for it, oldest first."""
        self._moved = []  # all of the list is returned: nothing is left for a claim to read
        raws = blob_list(self.client.lrange(self.inflight, 0, -1))[::-1]
        if not raws:
            return []
        counts = blob_list(self.client.hmget(deliveries_key(self.queue),
                                             [message_id(r) for r in raws]))
        return [Claimed(raw, int(count) if count and count.isdigit() else 1)
                for raw, count in zip(raws, counts, strict=True)]

    def claim(self, policy: BatchPolicy, *, already: int = 0, texts: int = 0) -> list[Claimed]:
        """Claim up to the policy's budget, interactive first; returns the new claims.

        ``already`` messages (holding ``texts`` live texts) were moved in flight by earlier
        calls for the same batch; what a blocking wait moved in since is claimed now.
        Afterwards `drained` says whether both lists were seen empty.
        """
        keys = [self.queue, bulk_queue(self.queue), self.inflight, deliveries_key(self.queue),
                backlog_key(self.queue), cancel_key(self.queue), dead_key(self.queue)]
        args: list[str | bytes | int | float] = [
            policy.claim_texts, policy.claim_messages, policy.max_deliveries, time.time(),
            already, DEAD_MARK, TEXTS_HEADER, DEADLINE_HEADER, ENQUEUED_HEADER,
            policy.lifo_after_s, _CLEAR_MOST, texts, RECORD_VERSION, *self._moved]
        rows, more = self._claim(keys=keys, args=args)
        self._moved = []
        self.drained = not more
        return [Claimed(bytes(raw), int(count), cast(State, state.decode()), int(texts),
                        bytes(mark), bool(bulk)) for raw, count, state, texts, mark, bulk in rows]

    def restore(self, consumer: str) -> int:
        """Put a dead consumer's claimed messages back at the head of their lists. Their
        delivery counts stand (a suspect of poison) unless its whole worker died: then they are
        refunded, so that killing workers again and again never dead-letters an innocent one."""
        keys = [inflight_key(self.queue, consumer), self.queue, bulk_queue(self.queue),
                live_key(self.queue), deliveries_key(self.queue), backlog_key(self.queue),
                rate_key(self.queue)]
        refund = "1" if worker_gone_locally(consumer) else "0"
        return int(self._restore(keys=keys, args=[consumer, refund, TEXTS_HEADER]))

    def sweep(self, *, everything: bool = False) -> int:
        """Restore every dead consumer's messages; returns how many came back.

        Dead: an expired liveness entry, or a process gone from this host. With ``everything``
        (once, at start) in-flight lists are also found by name, so messages survive even the
        loss of the liveness set (a broker restored without it).
        """
        now = time.time()
        listed = cast(list[tuple[bytes, float]],
                      self.client.zrange(live_key(self.queue), 0, -1, withscores=True))
        entries = {member.decode(): score for member, score in listed}
        dead = {c for c, expires in entries.items() if expires < now or gone_locally(c)}
        if everything:
            prefix = inflight_key(self.queue, "")
            for key in self.client.scan_iter(match=f"{_glob(prefix)}*", count=500):
                owner = key.decode()[len(prefix):]
                if owner != self.consumer and (owner not in entries or owner in dead):
                    dead.add(owner)
        dead.discard(self.consumer)
        return sum(self.restore(consumer) for consumer in sorted(dead))


def _glob(text: str) -> str:
    """``text`` with glob characters escaped, for a SCAN pattern."""
    for special in "\\*?[]":
        text = text.replace(special, "\\" + special)
    return text
