"""What a batch writes back, in one atomic script call: replies, events, dead letters, acks.

A reply goes where its message asks: to the producer's reply list (embedq's producer; ``RPUSH``
plus an ``EXPIRE``, so a producer that died leaves nothing behind for long), or, for a message
from a plain Celery producer, into Celery's Redis result backend exactly as Celery would store it
(``SET`` with the result expiry and ``PUBLISH`` for a waiting ``AsyncResult.get``). The same
atomic step (`commit.lua`: what a ``MULTI`` of the same commands does, for one broker command
less) removes each message from the consumer's in-flight list and forgets its delivery count,
so a reply is written if and only if its message is acknowledged: a crash before the script
runs redelivers the message, a crash after it never repeats the work.

A message from a Celery producer (no ``embedq_reply`` header) is finished as Celery's worker
finishes a task (`worker.celery_canvas`): result or failure stored through Celery's backend,
chord part counted, callbacks, chain and errbacks sent. Those are Celery's own calls and run
just before the script call that acknowledges the message: at least once, as Celery's
``acks_late`` is (a crash in between redelivers the message; the cache makes the repeat cheap).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, cast

import redis
import structlog
from celery.app.task import Context
from kombu.exceptions import OperationalError
from redis.commands.core import Script

from embedq.config.errors import EmbeddingFailedError, EmbedqError
from embedq.tasks.celery_results import result_value
from embedq.tasks.connections import blob_list
from embedq.tasks.events import event_message, task_event
from embedq.tasks.names import (
    EMBED_TASK,
    backlog_key,
    bulk_queue,
    cancel_key,
    dead_key,
    deliveries_key,
    rate_key,
)
from embedq.tasks.schema import EmbedResult
from embedq.tasks.wire import DEAD_MARK, DROPPED_ROW, DeadLetter, Envelope, Reply, message_id
from embedq.worker.celery_canvas import (
    CeleryApps,
    failure_traceback,
    finish_failure,
    finish_revoked,
    finish_success,
    message_context,
)

log = structlog.get_logger(__name__)
# The batch's writes run in one script (`commit.lua`): atomic as a MULTI/EXEC of them, for one
# broker command instead of two. Bytes, so the script needs no client to be hashed; it is
# loaded into a broker on first use (and again after a broker restart).
_COMMIT = Script(cast(redis.Redis, None),
                 files(__package__).joinpath("commit.lua").read_bytes())


@dataclass
class _Writes:
    """Commands in `commit.lua`'s layout: per command its name, whether its first argument is
    the next of the script's keys, how many further arguments, then those."""

    keys: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, name: str, key: str | None, *args: Any) -> None:
        """One command; ``key`` None: all of it is in ``args`` (a channel, a reply list)."""
        if key is not None:
            self.keys.append(key)
        self.args += [name, "0" if key is None else "1", len(args), *args]


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where this worker's replies and events go."""

    queue: str
    inflight: str
    hostname: str  # the Celery node name, as Flower shows it
    db: int  # the broker's database number (the event channel names it)
    reply_ttl_s: int
    events: bool
    celery: CeleryApps | None  # for messages of plain Celery producers


@dataclass
class Outbox:
    """The writes of one batch, queued until `commit`.

    Writes of a kind are merged, so a batch costs the broker a fixed few commands whatever its
    size: one ``RPUSH`` (and ``EXPIRE``) per producer's reply list, one ``HDEL`` of every
    delivery count, and one ``DEL`` of the in-flight list when the batch settles everything the
    consumer holds (``settles_all``; else one ``LREM`` per message).
    """

    target: ReplyTarget
    settles_all: bool = False  # set by the consumer for the last commit of a claimed batch
    _ops: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    _replies: dict[str, list[bytes]] = field(default_factory=dict)
    _acked: list[bytes] = field(default_factory=list)
    _events: list[dict[str, Any]] = field(default_factory=list)
    _celery: list[Callable[[], None]] = field(default_factory=list)
    _contexts: dict[str, Context] = field(default_factory=dict)  # Celery messages' requests
    _forget: dict[str, None] = field(default_factory=dict)  # task ids whose cancel marks go

    def succeed(self, envelope: Envelope, result: EmbedResult, runtime_s: float) -> None:
        """Reply with ``result`` and acknowledge the message.

        A Celery task either returns every vector or fails: a result with failed items is
        stored as an `EmbeddingFailedError` naming them, and one whose rows were all dropped
        before the forward pass (its ``expires`` passed meanwhile) is ``REVOKED``, as Celery
        stores an expired task.
        """
        if envelope.reply_to is None and result.errors:
            if all(why == DROPPED_ROW for _, why in result.errors) and (
                    len(result.errors) == len(result.cached)):
                self.revoked(envelope, "expired")
            else:
                self.fail(envelope, EmbeddingFailedError(dict(result.errors), None), runtime_s)
            return
        if envelope.reply_to is not None:
            self._reply(envelope.reply_to, Reply(envelope.task_id, result))
        else:
            self._finish_celery(envelope, "success", result)
        self._event(envelope, "task-succeeded", runtime=runtime_s,
                    result=f"{len(result.cached)} vectors of {result.dim}")
        self.ack(envelope.raw)

    def revoked(self, envelope: Envelope, reason: str) -> None:
        """Drop a message without computing it (``revoked``, ``expired``, ``cancelled``).

        A Celery producer's task is stored as ``REVOKED`` with ``reason`` and its chord part
        counted, as Celery's worker does for a revoked or expired task (Celery calls no
        errbacks for it); an embedq producer's message is only acknowledged: its caller has
        left and reads no reply.
        """
        if envelope.reply_to is None:
            self._finish_celery(envelope, "revoked", reason)
        self._event(envelope, "task-revoked", terminated=False, signum=None,
                    expired=reason == "expired")
        self.ack(envelope.raw)

    def forget_cancels(self, task_ids: list[str]) -> None:
        """Drop the cancellation marks of messages this batch settles (at its last `commit`;
        not those of a message handed back meanwhile)."""
        self._forget.update(dict.fromkeys(task_ids))

    def give_back(self, envelope: Envelope, *, bulk: bool, deliveries: int) -> None:
        """Return a claimed message uncomputed (its worker is stopping) to the head of the list
        it came from, as `restore` does for a dead consumer's, in the same atomic step as the
        batch's replies: it is on its queue or in flight at every instant, and it is never
        replied to here, so its caller gets exactly the one reply of whoever serves it next.
        This delivery is refunded (it did not end with a dead process: not a poison suspect)
        and its cancellation marks stay for the next consumer."""
        queue = self.target.queue
        raw = envelope.raw
        self._forget.pop(envelope.task_id, None)
        self._ops.append(("lrem", (self.target.inflight, 1, raw)))
        self._ops.append(("rpush", (bulk_queue(queue) if bulk else queue, raw)))
        if not bulk:  # the interactive list's texts are counted (claims subtract them)
            self._ops.append(("incrby", (backlog_key(queue), envelope.texts)))
        if deliveries > 1:
            self._ops.append(("hset", (deliveries_key(queue), message_id(raw), deliveries - 1)))
        else:
            self._ops.append(("hdel", (deliveries_key(queue), message_id(raw))))

    def publish_rate(self, consumer: str, texts_per_s: float) -> None:
        """Say how fast this consumer serves while busy: producers add the live consumers'
        rates up to tell how long the queue ahead of a new request will take."""
        self._ops.append(("hset", (rate_key(self.target.queue), consumer,
                                   f"{texts_per_s:.3f}")))

    def fail(self, envelope: Envelope, error: EmbedqError, runtime_s: float = 0.0) -> None:
        """Reply with ``error`` (its class and message) and acknowledge the message."""
        self.notify(envelope, error, runtime_s)
        self.ack(envelope.raw)

    def dead_letter(self, raw: bytes, reason: str, *, at: float) -> None:
        """Move ``raw`` from flight to the dead letters (the caller tells its producer)."""
        record = DeadLetter(reason, self.target.queue, at, 1, raw)
        self._ops.append(("lrem", (self.target.inflight, 1, raw)))
        self._ops.append(("hset", (deliveries_key(self.target.queue), message_id(raw), DEAD_MARK)))
        self._ops.append(("lpush", (dead_key(self.target.queue), record.encode())))

    def ack(self, raw: bytes) -> None:
        """Forget a message for good: off the in-flight list, its delivery count dropped."""
        self._acked.append(raw)

    def notify(self, envelope: Envelope, error: EmbedqError, runtime_s: float = 0.0) -> None:
        """Tell a message's producer about ``error``, leaving the message where it is (in
        flight until acknowledged, or already in the dead letters)."""
        if envelope.reply_to is not None:
            self._reply(envelope.reply_to, Reply(envelope.task_id, error_type=type(error).__name__,
                                                 error=str(error)))
        else:
            self._finish_celery(envelope, "failure", error)
        self._event(envelope, "task-failed", runtime=runtime_s, exception=repr(error))

    def commit(self, client: redis.Redis) -> None:
        """Celery's finishing steps, then everything else in one atomic script call
        (nothing if there is nothing). A broker error leaves what is not done for the retry."""
        self._run_celery()
        if self._forget and self.settles_all:  # the batch's last commit
            self._ops.append(("hdel", (cancel_key(self.target.queue), *self._forget)))
            self._forget.clear()
        if not (self._ops or self._events or self._replies or self._acked):
            return
        writes = _Writes()
        for key, blobs in self._replies.items():
            # A reply list goes as an argument, not as one of the script's keys: the broker
            # takes a script's keys as read and written, and a worker may only write replies.
            writes.add("rpush", None, key, *blobs)
            writes.add("expire", None, key, self.target.reply_ttl_s)
        for name, (key, *args) in self._ops:
            writes.add(name, key, *args)
        if self._acked:
            if self.settles_all:
                writes.add("del", self.target.inflight)
            else:
                for raw in self._acked:
                    writes.add("lrem", self.target.inflight, 1, raw)
            writes.add("hdel", deliveries_key(self.target.queue),
                       *dict.fromkeys(message_id(raw) for raw in self._acked))
        if self._events:
            channel, message = event_message(self._events, self.target.hostname,
                                             self.target.db)
            writes.add("publish", None, channel, message)
        refused = blob_list(_COMMIT(keys=writes.keys, args=writes.args, client=client))
        if refused:  # e.g. a reply key of the wrong type: the rest of the batch still counts
            log.warning("outbox_writes_refused", count=len(refused), first=refused[0].decode())
        self._ops.clear()
        self._events.clear()
        self._replies.clear()
        self._acked.clear()

    def _reply(self, key: str, reply: Reply) -> None:
        self._replies.setdefault(key, []).append(reply.to_wire())

    def _finish_celery(self, envelope: Envelope, outcome: str, value: Any) -> None:
        """Queue Celery's finishing calls for a Celery producer's message (run at commit)."""
        celery = self.target.celery
        if celery is None:
            return
        app, serializer = celery.for_message(envelope)
        request = message_context(envelope, self.target.hostname)
        if outcome == "success":
            retval = result_value(value, serializer)
            self._celery.append(lambda: finish_success(app, request, retval))
        elif outcome == "failure":
            tb = failure_traceback(value, self.target.hostname, self.target.queue)
            self._celery.append(lambda: finish_failure(app, request, value, tb))
        else:
            self._celery.append(lambda: finish_revoked(app, request, value))
        self._contexts[envelope.task_id] = request

    def _run_celery(self) -> None:
        """Each queued Celery call once; a broker outage is raised as a Redis error (the
        consumer retries the commit), a call Celery refuses (a bad signature) is logged."""
        while self._celery:
            try:
                self._celery[0]()
            except (redis.RedisError, OSError, OperationalError) as exc:
                raise redis.ConnectionError(f"celery result backend or broker: {exc!r}") from exc
            except Exception as exc:  # a malformed callback must not stop the batch's replies
                log.exception("celery_finish_failed", error=repr(exc))
            self._celery.pop(0)

    def _event(self, envelope: Envelope, kind: str, **fields: Any) -> None:
        """The message's ``task-received`` and its outcome, preceded for an embedq producer's
        message by its ``task-sent``: stamped with the producer's name and the time it was
        pushed, as the producer would have sent it, but carried in this batch's one
        ``PUBLISH`` instead of a ``PUBLISH`` per push (a broker command per lone request).
        Flower orders a task's events by their states, so it shows the same three; what it
        no longer shows is a message that is still waiting on its queue."""
        if not self.target.events:
            return
        if envelope.reply_to is not None:
            origin = envelope.headers.get("origin")
            sent = {"timestamp": envelope.enqueued_at} if envelope.enqueued_at else {}
            self._events.append(task_event(
                "task-sent", envelope.task_id,
                origin if isinstance(origin, str) else self.target.hostname,
                name=EMBED_TASK, queue=self.target.queue, **sent))
        request = self._contexts.get(envelope.task_id)
        if request is None:  # an embedq producer's message: one request of its sender
            about = {"name": EMBED_TASK, "args": "(...)", "kwargs": "{}", "root_id":
                     envelope.task_id, "parent_id": None, "eta": None, "expires": None}
        else:  # a Celery task: shown in Flower as Celery's worker would show it
            about = {"name": request.task, "args": request.get("argsrepr") or repr(request.args),
                     "kwargs": request.get("kwargsrepr") or repr(request.kwargs),
                     "root_id": request.root_id, "parent_id": request.parent_id,
                     "eta": request.eta, "expires": request.expires}
        received = task_event("task-received", envelope.task_id, self.target.hostname,
                              retries=0, **about)
        self._events.append(received)
        self._events.append(task_event(kind, envelope.task_id, self.target.hostname, **fields))
