"""Taking messages off a queue without ever losing one: claim, acknowledge, give back.

kombu's Redis transport pops a message and records it as unacknowledged in two steps, so a
worker killed between them loses the message, and one non-JSON entry kills the worker in the
pop itself. embedq's consumers use the atomic commands and scripts below instead (the dramatiq
broker's design, on Celery's own message format):

* **wait**: ``BLMOVE queue inflight`` blocks until a message is there and moves it, in one
  atomic step, into this consumer's own in-flight list: at every instant a message is either
  on the queue or in exactly one in-flight list;
* **claim** (`CLAIM`, one script): moves more messages until a budget of texts is reached, and
  counts each message's deliveries in the queue's deliveries hash (keyed by the SHA-1 of its
  bytes). A message delivered more than ``max_deliveries`` times (its processing killed the
  worker process each time) goes to the queue's dead letters instead, with the reason;
* **ack**: the replies, the deliveries counter's removal and the message's removal from the
  in-flight list are one ``MULTI`` (see `worker.replies`);
* **restore** (`RESTORE`, one script): a dead consumer's in-flight messages go back to the
  head of the queue, oldest first, and its liveness entry goes. Dead means its liveness entry
  expired, or (on the same host, at once) its process no longer exists. When its whole worker
  died (the parent too: a kill or a crash of the worker, not of one pool process), the
  deliveries are refunded: only a message whose pool process died under a living worker is a
  poison suspect.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import cast

import redis

from embedq.tasks.connections import blob_list
from embedq.tasks.dead_letters import message_id
from embedq.tasks.names import dead_key, deliveries_key, inflight_key, live_key

# KEYS: queue, inflight, deliveries, dead.
# ARGV: text budget, most messages, most deliveries, now, messages at the tail already counted.
# A message delivered before (its worker process died on it) is claimed alone: the claim stops
# before one, and claims nothing more after the first message if that one is such a message.
_CLAIM = """
local function texts(raw)
  return tonumber(string.match(raw, '"embedq_texts": (%d+)')) or 1
end
local budget, most, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local already = tonumber(ARGV[5])
local out = {}
local function deliver(raw, id)
  local n = -1
  if redis.call('HGET', KEYS[3], id) ~= 'dead' then n = redis.call('HINCRBY', KEYS[3], id, 1) end
  if n < 0 or n > limit then
    redis.call('LREM', KEYS[2], 1, raw)
    redis.call('HSET', KEYS[3], id, 'dead')
    local why = 'delivered ' .. (n - 1) .. ' times, and each delivery ended with the worker ' ..
      'process dead (killed, out of memory or crashed); a poison message?'
    if n < 0 then why = 'sent again after it was dead-lettered' end
    redis.call('LPUSH', KEYS[4], cmsgpack.pack({1, why, KEYS[1], tonumber(ARGV[4]), n - 1, raw}))
    n = -1
  end
  out[#out + 1] = {raw, n}
  return n
end
local held = redis.call('LRANGE', KEYS[2], 0, -1)
local total, count, alone = 0, #held, false
for _, raw in ipairs(held) do total = total + texts(raw) end
for i = #held - already, 1, -1 do
  if deliver(held[i], redis.sha1hex(held[i])) > 1 then alone = true end
end
while not alone and total < budget and count < most do
  local raw = redis.call('LINDEX', KEYS[1], -1)
  if not raw then break end
  local id = redis.sha1hex(raw)
  if redis.call('HEXISTS', KEYS[3], id) == 1 then break end
  redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  count = count + 1
  total = total + texts(raw)
  deliver(raw, id)
end
return out
"""
# KEYS: the dead consumer's inflight, queue, live set, deliveries.
# ARGV: the dead consumer's id, '1' to refund the deliveries (its whole worker died, not just
# the process that held them: the messages are not suspects).
_RESTORE = """
local n = 0
while true do
  local raw = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not raw then break end
  n = n + 1
  if ARGV[2] == '1' then
    local id = redis.sha1hex(raw)
    local count = tonumber(redis.call('HGET', KEYS[4], id))
    if count and count > 0 then redis.call('HINCRBY', KEYS[4], id, -1) end
  end
end
redis.call('ZREM', KEYS[3], ARGV[1])
return n
"""


def _namespace() -> str:
    """The pid namespace of this process: pids are comparable only inside one namespace."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def consumer_id() -> str:
    """A unique id that says where the consumer runs: ``host:pid-namespace:pid:parent-nonce``
    (the parent is the worker process that forked this pool process)."""
    return (f"{socket.gethostname()}:{_namespace()}:{os.getpid()}:"
            f"{os.getppid()}-{uuid.uuid4().hex[:8]}")


def _local_pids(consumer: str) -> tuple[int, int | None] | None:
    """(pid, parent pid or None) of a consumer on this host and pid namespace, else None."""
    try:
        host, namespace, pid, tail = consumer.rsplit(":", 3)
        number = int(pid)
        parent = int(tail.split("-", 1)[0]) if "-" in tail else None
    except ValueError:
        return None
    if host != socket.gethostname() or namespace != _namespace():
        return None
    return number, parent


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(pid)


def gone_locally(consumer: str) -> bool:
    """True when ``consumer`` ran on this host and pid namespace and its process is gone."""
    pids = _local_pids(consumer)
    return pids is not None and pids[0] != os.getpid() and _dead(pids[0])


def worker_gone_locally(consumer: str) -> bool:
    """True when the worker that ran ``consumer`` died as a whole (its parent is gone too): a
    kill of the worker, not a message that killed one pool process."""
    pids = _local_pids(consumer)
    return (pids is not None and pids[1] is not None and pids[1] != os.getpid()
            and _dead(pids[0]) and _dead(pids[1]))


def _zombie(pid: int) -> bool:
    """True for a process that has died but not been reaped yet (``kill -9`` just now)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


@dataclass(frozen=True, slots=True)
class Claimed:
    """One claimed message: its bytes and how often it has been delivered (-1: dead-lettered)."""

    raw: bytes
    deliveries: int

    @property
    def dead(self) -> bool:
        """True when the claim script moved it to the dead letters instead."""
        return self.deliveries < 0


class QueueClaims:
    """The Redis side of one consumer on one queue."""

    def __init__(self, client: redis.Redis, queue: str, consumer: str) -> None:
        self.client = client
        self.queue = queue
        self.consumer = consumer
        self.inflight = inflight_key(queue, consumer)
        self._claim = client.register_script(_CLAIM)
        self._restore = client.register_script(_RESTORE)

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` for a message and move it in flight; False if none came."""
        moved = self.client.blmove(self.queue, self.inflight, timeout_s,  # type: ignore[arg-type]
                                   "RIGHT", "LEFT")  # redis-py says int; Redis takes seconds
        return moved is not None

    def held(self) -> list[Claimed]:
        """What this consumer's in-flight list still holds (after an interrupted batch), with
        the delivery counts already recorded for it, oldest first."""
        raws = blob_list(self.client.lrange(self.inflight, 0, -1))[::-1]
        if not raws:
            return []
        counts = blob_list(self.client.hmget(deliveries_key(self.queue),
                                             [message_id(r) for r in raws]))
        return [Claimed(raw, int(count) if count and count.isdigit() else 1)
                for raw, count in zip(raws, counts, strict=True)]

    def claim(self, *, texts: int, messages: int, max_deliveries: int,
              already: int = 0) -> list[Claimed]:
        """Claim up to a budget of texts, oldest message first; returns the new claims.

        Everything in flight counts against the budget; ``already`` messages of it were claimed
        (and counted) by an earlier call for the same batch.
        """
        keys = [self.queue, self.inflight, deliveries_key(self.queue), dead_key(self.queue)]
        rows = self._claim(keys=keys, args=[texts, messages, max_deliveries, time.time(),
                                            already])
        return [Claimed(bytes(raw), int(count)) for raw, count in rows]

    def restore(self, consumer: str) -> int:
        """Put a dead consumer's claimed messages back at the head of the queue. Their delivery
        counts stand (a suspect of poison) unless its whole worker died: then they are refunded,
        so that killing workers again and again never dead-letters an innocent message."""
        keys = [inflight_key(self.queue, consumer), self.queue, live_key(self.queue),
                deliveries_key(self.queue)]
        refund = "1" if worker_gone_locally(consumer) else "0"
        return int(self._restore(keys=keys, args=[consumer, refund]))

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
