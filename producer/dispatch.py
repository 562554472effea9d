"""Coalescing: what concurrent callers of one producer process send leaves as few messages.

Callers (threads, an event loop, both) hand their jobs to one sender thread and return at once.
Whenever the sender is free it takes everything waiting: a lone request goes out immediately,
and requests that arrive while a send is under way travel together in the next one. When the
queue ahead already holds work (the load estimate below), it first waits a small share of that
queueing time for more callers, so that a spike leaves as few full messages, not many small
ones. For each (route, dimension, bulk or not, prompt) it looks the distinct texts up in the
shared cache (one ``MGET``), fills the hits, and pushes the misses as messages of at most
``EMBEDQ_CHUNK_SIZE`` texts, all in one pipelined round trip. Each row keeps its caller's
deadline; bulk messages go to the queue's bulk list, served after interactive work. The same
round trip adds the texts to the queue's backlog counter and, when the last reading is stale,
reads the consumers' service rates: the producer's load estimate (`embedq.producer.load`) costs
no round trip of its own. Per-item validation happened in the caller's thread before anything
was queued, so one caller's bad input never reaches a message shared with another.

A caller that gives up (``job.cancel()``, a cancelled ``aembed``) has its rows marked cancelled
in Redis, in the next round trip, so workers skip them like expired ones.

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
from functools import partial

import msgpack
import redis
import structlog

from embedq.config.errors import EmbedqError
from embedq.config.registry import RouteSpec
from embedq.config.settings import Settings
from embedq.producer.jobs import Job, RequestSpec
from embedq.producer.load import LoadBook, live_rates
from embedq.producer.outstanding import Outstanding, SentMessage
from embedq.producer.read_through import ReadThrough
from embedq.tasks.cache_codec import CachedVector
from embedq.tasks.loops import Loop
from embedq.tasks.names import (
    backlog_key,
    bulk_queue,
    cancel_key,
    live_key,
    rate_key,
    route_queue,
)
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.wire import build_message

log = structlog.get_logger(__name__)
Owners = dict[str, list[tuple[Job, int]]]
_LINGER_SHARE = 0.05  # of the queueing time ahead that the sender may wait for more callers
_MAX_LINGER_S = 0.02
_LINGER_FROM_S = 0.05  # a shorter queue: send at once (below capacity nothing waits)


def _by_key(messages: list[SentMessage]) -> dict[str, list[bytes]]:
    """Messages' bytes grouped by the list they go to, each group in the order given."""
    grouped: dict[str, list[bytes]] = defaultdict(list)
    for message in messages:
        grouped[message.key].append(message.raw)
    return grouped


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
    load: LoadBook = field(default_factory=LoadBook)
    _pending: list[Pending] = field(default_factory=list, init=False)
    _unsent: list[SentMessage] = field(default_factory=list, init=False)
    _cancels: list[SentMessage] = field(default_factory=list, init=False)
    _readings: set[str] = field(default_factory=set, init=False)  # queues to read unasked
    _wake: threading.Condition = field(default_factory=threading.Condition, init=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        self._origin = f"{socket.gethostname()}:{os.getpid()}"
        self._loop = Loop("broker", context={"side": "sender"})
        self._thread = threading.Thread(target=self._run, name="embedq-sender", daemon=True)
        self._thread.start()

    @property
    def broker_error(self) -> BaseException | None:
        """The broker outage being waited out, if any."""
        return self._loop.outage

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

    def cancel(self, job: Job) -> None:
        """Mark the rows of ``job`` in its unanswered messages as cancelled (next round trip)."""
        messages = self.outstanding.of_job(job)
        for message in messages:
            for part_job, _, at in message.parts:
                if part_job is job:
                    message.cancelled.update(at)
        if messages:
            with self._wake:
                self._cancels.extend(messages)
                self._wake.notify()

    def want_reading(self, queue: str) -> None:
        """Ask for a fresh load reading of ``queue`` although nothing is sent to it (its
        requests are being refused: the reading must not outlive the overload)."""
        with self._wake:
            if queue not in self._readings:
                self._readings.add(queue)
                self._wake.notify()

    def close(self) -> None:
        """Stop the sender thread (what is still queued is not sent)."""
        self._stopping.set()
        with self._wake:
            self._wake.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                while not (self._pending or self._unsent or self._cancels or self._readings
                           or self._stopping.is_set()):
                    self._wake.wait()
                if self._stopping.is_set():
                    return
                taken, self._pending = self._pending, []
            linger = self._linger(taken)
            if linger > 0 and not self._stopping.wait(linger):
                with self._wake:  # the callers who came meanwhile share this send
                    taken, self._pending = taken + self._pending, []
            self._loop.turn(partial(self._turn, taken), self._stopping)

    def _linger(self, taken: list[Pending]) -> float:
        """How long to wait for more callers before sending ``taken``: a share of the time its
        texts will wait on their queues anyway (nothing while a queue is short or its load
        unknown). Under load this costs a caller a few per cent of its queueing time and
        turns many small messages into few full ones, which the producer, Redis and the
        workers each handle at a fraction of the cost per text."""
        routes = {item.job.spec.route for item in taken}
        if not routes or any(route.fallback for route in routes):
            return 0.0  # which queue serves a fallback chain costs a round trip: never here
        waits = [self.load.wait_s(route_queue(route)) for route in routes]
        if None in waits:
            return 0.0
        ahead = min(w for w in waits if w is not None)
        return min(_MAX_LINGER_S, _LINGER_SHARE * ahead) if ahead >= _LINGER_FROM_S else 0.0

    def _turn(self, taken: list[Pending]) -> None:
        self._send(self._prepare(taken) if taken else [])

    def _prepare(self, taken: list[Pending]) -> list[SentMessage]:
        """Group by spec, answer from the cache, cut the misses into messages. A group that
        fails unexpectedly fails its own callers only."""
        groups: dict[tuple[RequestSpec, int], list[Pending]] = defaultdict(list)
        for item in taken:
            if not item.job.done():  # a caller that cancelled before its turn costs nothing
                groups[(item.job.spec, id(item.job) if item.alone else 0)].append(item)
        messages: list[SentMessage] = []
        for (spec, _), items in groups.items():
            try:
                messages += self._group_messages(spec, items)
            except Exception as exc:  # a bug must not take the sender, or other callers, down
                log.exception("sender_group_failed", route=spec.route.name, error=repr(exc))
                for item in items:
                    item.job.fail(EmbedqError(f"the embedq sender failed on this request: "
                                              f"{exc!r}"))
        return messages

    def _group_messages(self, spec: RequestSpec, items: list[Pending]) -> list[SentMessage]:
        route = self.serving(spec.route)
        owners: Owners = {}
        for item in items:
            for row in item.rows:
                owners.setdefault(item.job.texts[row], []).append((item.job, row))
        texts = self._answer_from_cache(route, spec, owners)
        size = self.settings.chunk_size
        return [self._message(route, spec, texts[start:start + size], owners)
                for start in range(0, len(texts), size)]

    def _answer_from_cache(self, route: RouteSpec, spec: RequestSpec, owners: Owners
                           ) -> list[str]:
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

    def _request(self, route: RouteSpec, spec: RequestSpec, texts: list[str],
                 deadlines: list[float] | None = None) -> EmbedRequest:
        return EmbedRequest(texts=texts, route=route.name, model=route.model,
                            precision=route.precision.value, dim=spec.dim,
                            normalize=route.normalize, output_dtype=route.output_dtype.value,
                            prompt=spec.prompt.text, deadlines=deadlines)

    def _message(self, route: RouteSpec, spec: RequestSpec, texts: list[str],
                 owners: Owners) -> SentMessage:
        deadlines = [max(job.deadline for job, _ in owners[text]) for text in texts]
        request = self._request(route, spec, texts, deadlines)
        queue = route_queue(route)
        task_id, raw = build_message(request, queue=queue, reply_to=self.reply_to,
                                     origin=self._origin, now=time.time(),
                                     deadline=max(deadlines), bulk=spec.bulk)
        parts: dict[Job, tuple[list[int], list[int]]] = {}
        for at, text in enumerate(texts):
            for job, row in owners[text]:
                job_rows, message_rows = parts.setdefault(job, ([], []))
                job_rows.append(row)
                message_rows.append(at)
        for job in parts:
            job.task_ids.append(request.id)
        return SentMessage(task_id, queue, raw,
                           [(job, rows, at) for job, (rows, at) in parts.items()],
                           key=bulk_queue(queue) if spec.bulk else queue, texts=len(texts),
                           deadline=max(deadlines))

    @staticmethod
    def _read_load(pipe: redis.client.Pipeline, reads: list[tuple[str, bool]],
                   added: dict[str, int]) -> None:
        """Add this push's texts to each queue's backlog (the answer is the new total) and,
        where the last reading is stale, read the consumers' rates and which are live."""
        now = time.time()
        for queue, stale in reads:
            pipe.incrby(backlog_key(queue), added.get(queue, 0))
            if stale:
                pipe.hgetall(rate_key(queue))
                pipe.zrangebyscore(live_key(queue), now, "+inf")

    def _send(self, messages: list[SentMessage]) -> None:
        """Push fresh messages (tail of their lists) and lost ones (head), write cancellation
        marks and read the load of the queues pushed to, in one round trip."""
        with self._wake:
            retry, self._unsent = self._unsent, []
            cancels, self._cancels = self._cancels, []
            asked, self._readings = self._readings, set()
        todo = retry + messages
        self.outstanding.add(messages)
        added: dict[str, int] = defaultdict(int)
        for message in todo:
            if not message.bulk:
                added[message.queue] += message.texts
        reads = [(queue, self.load.stale(queue)) for queue in sorted(set(added) | asked)]
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pushes = 0
                for push, batch in ((pipe.lpush, messages), (pipe.rpush, retry)):
                    for key, raws in _by_key(batch).items():
                        push(key, *raws)  # one command per list, in the order sent
                        pushes += 1
                for message in cancels:
                    rows = [] if message.abandoned else sorted(message.cancelled)
                    pipe.hset(cancel_key(message.queue), message.task_id, msgpack.packb(rows))
                    pipe.expire(cancel_key(message.queue), int(self.settings.timeout_s) + 60)
                self._read_load(pipe, reads, added)
                answers = iter(pipe.execute()[pushes + 2 * len(cancels):])
        except BaseException:
            with self._wake:
                self._unsent = todo + self._unsent
                self._cancels = cancels + self._cancels
            raise
        for queue, stale in reads:
            backlog = int(next(answers))
            rates, live = live_rates(next(answers), next(answers)) if stale else (None, None)
            self.load.record(queue, backlog=backlog, rates=rates, consumers=live)
