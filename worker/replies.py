"""What a batch writes back, in one ``MULTI`` round trip: replies, events, dead letters, acks.

A reply goes where its message asks: to the producer's reply list (embedq's producer; ``RPUSH``
plus an ``EXPIRE``, so a producer that died leaves nothing behind for long), or, for a message
from a plain Celery producer, into Celery's Redis result backend exactly as Celery would store it
(``SET`` with the result expiry and ``PUBLISH`` for a waiting ``AsyncResult.get``). The same
transaction removes each message from the consumer's in-flight list and forgets its delivery
count, so a reply is written if and only if its message is acknowledged: a crash before the
``EXEC`` redelivers the message, a crash after it never repeats the work.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog
from celery.backends.base import Backend as CeleryResultBackend

from embedq.config.errors import EmbedqError
from embedq.tasks.events import event_message, task_event
from embedq.tasks.names import EMBED_TASK, cancel_key, dead_key, deliveries_key, rate_key
from embedq.tasks.schema import EmbedResult
from embedq.tasks.wire import DEAD_MARK, DeadLetter, Envelope, Reply, message_id

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where this worker's replies and events go."""

    queue: str
    inflight: str
    hostname: str  # the Celery node name, as Flower shows it
    db: int  # the broker's database number (the event channel names it)
    reply_ttl_s: int
    events: bool
    results: CeleryResultBackend | None  # for messages of plain Celery producers


@dataclass
class Outbox:
    """The writes of one batch, queued until `commit`."""

    target: ReplyTarget
    _ops: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    _events: list[dict[str, Any]] = field(default_factory=list)

    def succeed(self, envelope: Envelope, result: EmbedResult, runtime_s: float) -> None:
        """Reply with ``result`` and acknowledge the message."""
        if envelope.reply_to is not None:
            self._reply(envelope.reply_to, Reply(envelope.task_id, result))
        else:
            self._celery_result(envelope.task_id, "SUCCESS", result.to_wire())
        self._event(envelope, "task-succeeded", runtime=runtime_s,
                    result=f"{len(result.cached)} vectors of {result.dim}")
        self.ack(envelope.raw)

    def fail(self, envelope: Envelope, error: EmbedqError, runtime_s: float = 0.0) -> None:
        """Reply with ``error`` (its class and message) and acknowledge the message."""
        self.notify(envelope, error, runtime_s)
        self.ack(envelope.raw)

    def dead_letter(self, raw: bytes, reason: str, *, at: float, deliveries: int = 1) -> None:
        """Move ``raw`` from flight to the dead letters (the caller tells its producer)."""
        record = DeadLetter(reason, self.target.queue, at, deliveries, raw)
        self._ops.append(("lrem", (self.target.inflight, 1, raw)))
        self._ops.append(("hset", (deliveries_key(self.target.queue), message_id(raw), DEAD_MARK)))
        self._ops.append(("lpush", (dead_key(self.target.queue), record.encode())))

    def revoked(self, envelope: Envelope, reason: str) -> None:
        """Acknowledge a message dropped uncomputed (``expired`` or ``cancelled``): its callers
        have left, so an embedq producer gets no reply; a plain Celery producer's result
        backend records REVOKED, as Celery's worker does for an expired or revoked task."""
        if envelope.reply_to is None:
            self._celery_result(envelope.task_id, "REVOKED", {
                "exc_type": "TaskRevokedError", "exc_message": [reason],
                "exc_module": "celery.exceptions"})
        self._event(envelope, "task-revoked", terminated=False, signum=None,
                    expired=reason == "expired")
        self.ack(envelope.raw)

    def forget_cancels(self, task_ids: list[str]) -> None:
        """Drop the cancellation marks of messages this batch settles."""
        self._ops.append(("hdel", (cancel_key(self.target.queue), *task_ids)))

    def publish_rate(self, consumer: str, texts_per_s: float) -> None:
        """Say how fast this consumer serves while busy: producers add the live consumers'
        rates up to tell how long the queue ahead of a new request will take."""
        self._ops.append(("hset", (rate_key(self.target.queue), consumer,
                                   f"{texts_per_s:.3f}")))

    def ack(self, raw: bytes) -> None:
        """Forget a message for good: off the in-flight list, its delivery count dropped."""
        self._ops.append(("lrem", (self.target.inflight, 1, raw)))
        self._ops.append(("hdel", (deliveries_key(self.target.queue), message_id(raw))))

    def notify(self, envelope: Envelope, error: EmbedqError, runtime_s: float = 0.0) -> None:
        """Tell a message's producer about ``error``, leaving the message where it is (in
        flight until acknowledged, or already in the dead letters)."""
        if envelope.reply_to is not None:
            self._reply(envelope.reply_to, Reply(envelope.task_id, error_type=type(error).__name__,
                                                 error=str(error)))
        elif self.target.results is not None:
            self._celery_result(envelope.task_id, "FAILURE",
                                self.target.results.prepare_exception(error))
        self._event(envelope, "task-failed", runtime=runtime_s, exception=repr(error))

    def commit(self, client: redis.Redis) -> None:
        """Everything in one ``MULTI``/``EXEC`` round trip (nothing if there is nothing)."""
        if not self._ops and not self._events:
            return
        with client.pipeline(transaction=True) as pipe:
            for name, args in self._ops:
                getattr(pipe, name)(*args)
            if self._events:
                channel, message = event_message(self._events, self.target.hostname,
                                                 self.target.db)
                pipe.publish(channel, message)
            answers = pipe.execute(raise_on_error=False)
        failed = [repr(answer) for answer in answers if isinstance(answer, Exception)]
        if failed:  # e.g. a reply key of the wrong type: the rest of the batch still counts
            log.warning("outbox_writes_refused", count=len(failed), first=failed[0])
        self._ops.clear()
        self._events.clear()

    def _reply(self, key: str, reply: Reply) -> None:
        self._ops.append(("rpush", (key, reply.to_wire())))
        self._ops.append(("expire", (key, self.target.reply_ttl_s)))

    def _celery_result(self, task_id: str, status: str, result: Any) -> None:
        results = self.target.results
        if results is None:
            return
        meta = {"status": status, "result": result, "traceback": None, "children": [],
                "date_done": datetime.datetime.now(datetime.UTC).isoformat(),
                "task_id": task_id}
        key, value = results.get_key_for_task(task_id), results.encode(meta)
        self._ops.append(("set", (key, value, results.expires)))
        self._ops.append(("publish", (key, value)))

    def _event(self, envelope: Envelope, kind: str, **fields: Any) -> None:
        if not self.target.events:
            return
        received = task_event("task-received", envelope.task_id, self.target.hostname,
                              name=EMBED_TASK, args="(...)", kwargs="{}", retries=0,
                              root_id=envelope.task_id, parent_id=None, eta=None, expires=None)
        self._events.append(received)
        self._events.append(task_event(kind, envelope.task_id, self.target.hostname, **fields))
