"""The reply path of one producer process: a thread that reads its reply list and fills jobs.

Workers push every reply for this process onto one Redis list (``RPUSH`` with an expiry, in the
same transaction as the message's acknowledgement). This thread blocks on it (``BLPOP``) and,
while more are awaited, takes whatever else is there in the same turn (``LPOP`` with a count),
so a reply costs no polling, no per-task subscription and no result key left behind: a reply
that has been read is gone, and a list nobody reads expires.

The same thread watches for lost messages. A message unanswered for ``EMBEDQ_RESEND_AFTER_S`` is
looked for: still on its queue (waiting; with a FIFO queue nothing younger need be checked),
claimed by a consumer (being worked on, or about to come back from a dead one), dead-lettered
(its jobs fail with `DeadLetteredError`), or nowhere. Nowhere twice in a row means lost (a broker
that restarted without its last writes, say): it is sent again, up to ``EMBEDQ_MAX_RESENDS``
times. A duplicate costs little: the worker's cache answers it and the second reply is ignored.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog

from embedq.config import errors
from embedq.config.errors import DeadLetteredError, EmbedqError, PayloadError
from embedq.config.settings import Settings
from embedq.producer.jobs import Job
from embedq.producer.outstanding import Outstanding, SentMessage
from embedq.tasks.connections import blob_list
from embedq.tasks.loops import Loop
from embedq.tasks.names import deliveries_key
from embedq.tasks.wire import DEAD_MARK, Reply, message_id

log = structlog.get_logger(__name__)
POLL_S = 1.0
_BATCH = 512
_PROBE_EVERY_S = 2.0
_PROBE_LIMIT = 32


def error_from(name: str, message: str) -> EmbedqError:
    """The error a worker named, as an instance of embedq's own class of that name."""
    kind = getattr(errors, name, None)
    if isinstance(kind, type) and issubclass(kind, EmbedqError) and kind not in (
            errors.EmbeddingFailedError, errors.InvalidTextError, errors.UnknownUseCaseError):
        with contextlib.suppress(TypeError):  # a class whose constructor wants other arguments
            return kind(message)
    return EmbedqError(f"{name}: {message}")


def probe(client: redis.Redis, message: SentMessage) -> str:
    """Where a message is: ``queued``, ``claimed``, ``dead`` or ``missing`` (one round trip)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.lpos(message.key, message.raw)  # type: ignore[arg-type]  # bytes are fine
        pipe.hget(deliveries_key(message.queue), message_id(message.raw))
        position, deliveries = pipe.execute()
    if position is not None:
        return "queued"
    if deliveries == DEAD_MARK:
        return "dead"
    return "claimed" if deliveries is not None else "missing"


@dataclass(eq=False)
class ReplyListener:
    """Reads one reply list until stopped; ``resend`` pushes a lost message again."""

    settings: Settings
    client: redis.Redis
    key: str
    outstanding: Outstanding
    resend: Callable[[SentMessage], None]
    split: Callable[[Job, list[int]], None]

    def __post_init__(self) -> None:
        self._probed_at = time.monotonic()
        self._stopping = threading.Event()
        self._loop = Loop("reply_path", context={"side": "replies"})
        self._thread = threading.Thread(target=self._run, name="embedq-replies", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop reading (within one poll interval)."""
        self._stopping.set()
        self._thread.join(timeout=POLL_S + 5)

    @property
    def broker_error(self) -> BaseException | None:
        """The broker outage being waited out, if any."""
        return self._loop.outage

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._loop.turn(self._turn, self._stopping)

    def _turn(self) -> None:
        self._take()
        self._watch()

    def _take(self) -> None:
        """Wait for a reply, deliver it at once, then whatever else came meanwhile (only while
        other messages are unanswered: a lone request costs one read)."""
        first = blob_list(self.client.blpop([self.key], timeout=POLL_S))
        if not first:
            return
        self.deliver(first[1])
        if not len(self.outstanding):
            return  # a stray reply left behind is read by the next wait
        for blob in blob_list(self.client.lpop(self.key, _BATCH) or []):
            self.deliver(blob)

    def deliver(self, blob: bytes) -> None:
        """Hand one reply to the jobs its message serves. A stray reply is logged; a reply that
        cannot be applied (a bug, a result that does not fit) fails its own callers only."""
        try:
            reply = Reply.from_wire(blob)
        except PayloadError as exc:
            log.warning("reply_unreadable", error=str(exc))
            return
        message = self.outstanding.pop(reply.task_id)
        if message is None:
            return  # a duplicate (a resent message answered twice) or one given up on
        try:
            if reply.result is None:
                self._failed(message, error_from(reply.error_type, reply.error))
                return
            for job, rows, at in message.parts:
                job.fill(rows, reply.result, at)
        except Exception as exc:
            log.exception("reply_not_applied", task_id=reply.task_id, error=repr(exc))
            failure = EmbedqError(f"the reply to message {reply.task_id} could not be applied: "
                                  f"{exc!r}")
            for job, _, _ in message.parts:
                job.fail(failure)

    def _watch(self) -> None:
        """Every few seconds: look for messages unanswered for too long, oldest first."""
        now = time.monotonic()
        if now - self._probed_at < _PROBE_EVERY_S:
            return
        self._probed_at = now
        self.outstanding.forget_abandoned()
        for message in self.outstanding.oldest(self.settings.resend_after_s, _PROBE_LIMIT):
            message.state = probe(self.client, message)
            if message.state == "queued":
                break  # everything younger on that queue waits behind it
            if message.state == "dead":
                self._dead(message)
            elif message.state == "missing":
                self._missing(message)
            else:
                message.missing_probes = 0

    def _failed(self, message: SentMessage, error: EmbedqError) -> None:
        """A message failed as a whole. A dead-lettered message that several callers shared is
        sent again split, one message per caller, so only the caller whose texts kill the
        worker loses them; any other failure is every caller's."""
        if isinstance(error, DeadLetteredError) and len(message.parts) > 1:
            log.warning("dead_letter_split", task_id=message.task_id, callers=len(message.parts))
            for job, rows, _ in message.parts:
                self.split(job, rows)
            return
        for job, _, _ in message.parts:
            job.fail(error)

    def _dead(self, message: SentMessage) -> None:
        if self.outstanding.pop(message.task_id) is None:
            return
        self._failed(message, DeadLetteredError(
            f"message {message.task_id} on {message.queue} is in the dead letters: "
            f"embedq dead-letters list --queue {message.queue}"))

    def _missing(self, message: SentMessage) -> None:
        message.missing_probes += 1
        if message.missing_probes < 2:
            return  # its reply may be on the way: look once more before calling it lost
        message.missing_probes = 0
        if message.resends >= self.settings.max_resends:
            if self.outstanding.pop(message.task_id) is not None:
                error = EmbedqError(f"message {message.task_id} on {message.queue} was lost "
                                    f"{message.resends + 1} times (sent, then neither queued, "
                                    "claimed nor answered); giving up")
                for job, _, _ in message.parts:
                    job.fail(error)
            return
        log.warning("message_lost_resending", task_id=message.task_id, queue=message.queue,
                    resends=message.resends + 1)
        self.resend(message)
