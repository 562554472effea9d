"""Coalescing: what concurrent callers of one producer process send leaves as few messages.

Callers (threads, an event loop, both) hand their jobs to one sender thread and return at once.
Whenever the sender is free it takes everything waiting: a lone request goes out immediately,
and requests that arrive while a send is under way travel together in the next one. For each
(route, dimension) it looks the distinct texts up in the shared cache (one ``MGET``), fills the
hits, and pushes the misses as messages of at most ``EMBEDQ_CHUNK_SIZE`` texts, all in one
pipelined round trip. Per-item validation happened in the caller's thread before anything was
queued, so one caller's bad input never reaches a message shared with another.

If the broker cannot be reached the sender keeps the messages and tries again with backoff;
callers that wait meanwhile get `BrokerUnavailableError` when their time runs out.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import structlog

from embedq.config.registry import RouteSpec
from embedq.config.settings import Settings
from embedq.producer.jobs import Job, RequestSpec
from embedq.producer.outstanding import Outstanding, SentMessage
from embedq.producer.read_through import ReadThrough
from embedq.tasks.cache_codec import CachedVector
from embedq.tasks.connections import database
from embedq.tasks.envelope import build_message
from embedq.tasks.events import event_message, task_event
from embedq.tasks.names import EMBED_TASK, route_queue
from embedq.tasks.schema import EmbedRequest

log = structlog.get_logger(__name__)
_BACKOFF_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class Pending:
    """A job's rows waiting for the sender; ``alone`` keeps them out of shared messages."""

    job: Job
    rows: list[int]
    alone: bool = False


@dataclass(eq=False)
class Dispatcher:
    """The sender thread of one producer process (started on first use, restarted after fork)."""

    settings: Settings
    client: redis.Redis
    outstanding: Outstanding
    reply_to: str
    serving: Callable[[RouteSpec], RouteSpec]
    read_through: ReadThrough | None
    broker_error: Exception | None = field(default=None, init=False)  # while it lasts
    _pending: list[Pending] = field(default_factory=list, init=False)
    _unsent: list[SentMessage] = field(default_factory=list, init=False)
    _wake: threading.Condition = field(default_factory=threading.Condition, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._origin = f"{socket.gethostname()}:{os.getpid()}"
        self._db = database(self.settings.broker)
        self._thread = threading.Thread(target=self._run, name="embedq-sender", daemon=True)
        self._thread.start()

    def submit(self, job: Job, rows: list[int], *, alone: bool = False) -> None:
        """Queue ``rows`` of ``job`` for the next send (never blocks on Redis); with ``alone``
        they travel in messages of their own (a dead-lettered shared message is split so)."""
        with self._wake:
            self._pending.append(Pending(job, rows, alone))
            self._wake.notify()

    def resend(self, message: SentMessage) -> None:
        """Push a lost message again, to the head of its queue (it has waited long enough)."""
        message.resends += 1
        message.sent_at = time.monotonic()
        with self._wake:
            self._unsent.append(message)
            self._wake.notify()

    def close(self) -> None:
        """Stop the sender thread (what is still queued is not sent)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._wake:
                while not self._pending and not self._unsent and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                taken, self._pending = self._pending, []
            try:
                self._send(self._prepare(taken) if taken else [])
                backoff = 0.0
            except (redis.RedisError, OSError) as exc:
                if self.broker_error is None:
                    log.warning("broker_unavailable", error=repr(exc),
                                note="keeping the messages; retrying with backoff")
                self.broker_error = exc
                backoff = min(_BACKOFF_MAX_S, max(0.05, backoff * 2))
                time.sleep(backoff)

    def _prepare(self, taken: list[Pending]) -> list[SentMessage]:
        """Group by spec, answer from the cache, cut the misses into messages."""
        groups: dict[tuple[RequestSpec, int], list[Pending]] = defaultdict(list)
        for item in taken:
            groups[(item.job.spec, id(item.job) if item.alone else 0)].append(item)
        messages: list[SentMessage] = []
        for (spec, _), items in groups.items():
            route = self.serving(spec.route)
            owners: dict[str, list[tuple[Job, int]]] = {}
            for item in items:
                for row in item.rows:
                    owners.setdefault(item.job.texts[row], []).append((item.job, row))
            texts = self._answer_from_cache(route, spec, owners)
            size = self.settings.chunk_size
            for start in range(0, len(texts), size):
                messages.append(self._message(route, spec, texts[start:start + size], owners))
        return messages

    def _answer_from_cache(self, route: RouteSpec, spec: RequestSpec,
                           owners: dict[str, list[tuple[Job, int]]]) -> list[str]:
        """Fill cache hits into their jobs; returns the texts still to embed."""
        texts = list(owners)
        if self.read_through is None:
            return texts
        request = self._request(route, spec, texts)
        info, found = self.read_through.lookup(request)
        if info is None:
            return texts
        hits: dict[Job, dict[int, CachedVector]] = defaultdict(dict)
        misses = []
        for text, entry in zip(texts, found, strict=True):
            if entry is None:
                misses.append(text)
                continue
            for job, row in owners[text]:
                hits[job][row] = entry
        for job, rows in hits.items():
            job.fill_cached(rows, route.model, info.revision, info.precision)
        return misses

    def _request(self, route: RouteSpec, spec: RequestSpec, texts: list[str]) -> EmbedRequest:
        return EmbedRequest(texts=texts, route=route.name, model=route.model,
                            precision=route.precision.value, dim=spec.dim,
                            normalize=route.normalize,
                            output_dtype=route.output_dtype.value, prompt=spec.prompt.text)

    def _message(self, route: RouteSpec, spec: RequestSpec, texts: list[str],
                 owners: dict[str, list[tuple[Job, int]]]) -> SentMessage:
        request = self._request(route, spec, texts)
        queue = route_queue(route)
        task_id, raw = build_message(request, queue=queue, reply_to=self.reply_to,
                                     origin=self._origin, now=time.time())
        parts: dict[Job, tuple[list[int], list[int]]] = {}
        for at, text in enumerate(texts):
            for job, row in owners[text]:
                job_rows, message_rows = parts.setdefault(job, ([], []))
                job_rows.append(row)
                message_rows.append(at)
        for job in parts:
            job.messages += 1
        return SentMessage(task_id, queue, raw,
                           [(job, rows, at) for job, (rows, at) in parts.items()])

    def _send(self, messages: list[SentMessage]) -> None:
        """Push fresh messages (tail of the queue) and lost ones (head), in one round trip."""
        with self._wake:
            retry, self._unsent = self._unsent, []
        todo = retry + messages
        if not todo:
            return
        self.outstanding.add(messages)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.lpush(message.queue, message.raw)
                for message in retry:
                    pipe.rpush(message.queue, message.raw)
                if self.settings.task_events:
                    channel, event = event_message(
                        [task_event("task-sent", m.task_id, self._origin, name=EMBED_TASK,
                                    queue=m.queue) for m in todo], self._origin, self._db)
                    pipe.publish(channel, event)
                pipe.execute()
        except BaseException:
            with self._wake:
                self._unsent = todo + self._unsent
            raise
        self.broker_error = None
