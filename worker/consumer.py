"""One queue's consumer in one worker process: wait, claim a batch, embed it, reply, repeat.

This replaces Celery's per-task consumer for embed queues (celery-batches before it): a free
process takes everything waiting, up to a budget of texts (``EMBEDQ_BATCH_FLUSH_TEXTS``), as one
batch, so batches grow with load by themselves and no process waits on another's flush. When
traffic is flowing (the last batch held more than one text) and the claim came up short, it
waits up to ``EMBEDQ_BATCH_INTERVAL_S`` for one more message first; a lone request never waits.

Robustness, in order of what can go wrong:

* a message that is not a task message, or whose body is refused, goes to the dead letters
  (its producer, when the envelope names one, gets the typed refusal at once); the worker lives;
* a message redelivered after its worker process died is served in a batch of its own, so a
  poison message can only take itself down, and after ``EMBEDQ_MAX_DELIVERIES`` it is dead;
* the broker going away: every Redis call is retried with backoff until it answers again, a
  finished batch's replies included (they are kept until written); the loop never exits on it;
* anything else (a bug, out of memory in a forward pass) fails that batch's messages with the
  error, never the process.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import redis
import structlog

from embedq.config.errors import DeadLetteredError, EmbedqError, PayloadError
from embedq.tasks.envelope import Envelope, GarbageMessageError, open_envelope
from embedq.tasks.schema import EmbedRequest, EmbedResult
from embedq.worker.claims import Claimed, QueueClaims
from embedq.worker.metrics import BatchFacts
from embedq.worker.replies import Outbox, ReplyTarget

log = structlog.get_logger(__name__)

Outcome = EmbedResult | EmbedqError
Handler = Callable[[list[EmbedRequest]], list[Outcome]]
Guard = Callable[[EmbedRequest], str | None]  # why a request does not belong on this queue
Reader = Callable[[Envelope], EmbedRequest]  # issue 20: a Celery short call or a full request
Group = list[tuple[Envelope, EmbedRequest]]
Gate = Callable[[Group, Outbox], Group]  # issue 20: drops revoked/expired Celery tasks
_TEXTS = re.compile(rb'"embedq_texts": (\d+)')
_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0
_FLOWING_S = 1.0  # a batch of several texts within this long means traffic is flowing


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How one consumer batches, waits and gives up on poison."""

    budget_texts: int
    most_messages: int
    linger_s: float
    max_deliveries: int
    poll_s: float
    sweep_every_s: float


def _texts(raw: bytes) -> int:
    found = _TEXTS.search(raw)
    return int(found.group(1)) if found else 1


@dataclass(eq=False)
class Consumer:
    """Serves one queue until stopped; ``handle`` embeds a list of requests (`EmbedService`).

    ``guard`` refuses a request this queue must not serve: a message must never make a worker
    load a model its queue does not name. ``compute`` is held around every forward pass, so the
    consumers of several queues in one process take turns on the cores.
    """

    claims: QueueClaims
    target: ReplyTarget
    handle: Handler
    guard: Guard
    settings: ConsumerSettings
    compute: threading.Lock
    observe: Callable[[BatchFacts], None] | None = None
    read: Reader = Envelope.request  # issue 20 hook (worker.celery_requests.message_reader)
    gate: Gate | None = None  # issue 20 hook (worker.celery_control.celery_gate)
    _unsent: Outbox | None = field(default=None, init=False)
    _interrupted: bool = field(default=False, init=False)
    _flowing_until: float = field(default=0.0, init=False)
    _swept_at: float = field(default=0.0, init=False)
    _down_since: float | None = field(default=None, init=False)

    @property
    def clean(self) -> bool:
        """True when nothing this consumer claimed is left unanswered."""
        return not self._interrupted and self._unsent is None

    @property
    def queue(self) -> str:
        """The queue this consumer serves."""
        return self.claims.queue

    def run(self, stopping: threading.Event) -> None:
        """The consumer loop; returns once ``stopping`` is set and the batch in hand is done."""
        backoff = _BACKOFF_FIRST_S
        first = True
        while not stopping.is_set():
            try:
                if first:
                    restored = self.claims.sweep(everything=True)
                    log.info("consumer_started", queue=self.queue, consumer=self.claims.consumer,
                             restored=restored)
                    first = False
                self.step()
                backoff = _BACKOFF_FIRST_S
                if self._down_since is not None:
                    log.info("broker_recovered", queue=self.queue,
                             down_s=round(time.monotonic() - self._down_since, 3))
                    self._down_since = None
            except (redis.RedisError, OSError) as exc:
                self._interrupted = True
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("broker_unavailable", queue=self.queue, error=repr(exc),
                                note="retrying with backoff; claimed work is kept")
                stopping.wait(backoff)
                backoff = min(_BACKOFF_MAX_S, backoff * 2)

    def step(self) -> None:
        """One turn: finish an interrupted batch, else wait for work and serve one batch."""
        if self._interrupted:
            if self._unsent is not None:
                self._unsent.commit(self.claims.client)
                self._unsent = None
            self._interrupted = False
            held = self.claims.held()
            if held:
                self.serve(held)
                return
        now = time.monotonic()
        if now - self._swept_at > self.settings.sweep_every_s:
            self._swept_at = now
            restored = self.claims.sweep()
            if restored:
                log.warning("messages_restored", queue=self.queue, count=restored,
                            note="claimed by a consumer that died; back at the head of the queue")
        claims = self._claim()  # a busy queue is claimed from at once, without blocking first
        if not claims:
            if not self.claims.wait(self.settings.poll_s):
                return
            claims = self._claim()
        self.serve(claims)

    def _claim(self) -> list[Claimed]:
        settings = self.settings
        claims = self.claims.claim(texts=settings.budget_texts, messages=settings.most_messages,
                                   max_deliveries=settings.max_deliveries)
        texts = sum(_texts(c.raw) for c in claims if not c.dead)
        if (texts < settings.budget_texts and settings.linger_s > 0
                and all(c.deliveries <= 1 for c in claims)
                and time.monotonic() < self._flowing_until
                and self.claims.wait(settings.linger_s)):
            alive = sum(not c.dead for c in claims)
            claims += self.claims.claim(texts=settings.budget_texts,
                                        messages=settings.most_messages,
                                        max_deliveries=settings.max_deliveries, already=alive)
        return claims

    def serve(self, claims: list[Claimed]) -> None:
        """Embed a claimed batch and write every reply and acknowledgement."""
        outbox = Outbox(self.target)
        fresh: list[tuple[Envelope, EmbedRequest]] = []
        suspects: list[tuple[Envelope, EmbedRequest]] = []
        for claim in claims:
            parsed = self._open(claim, outbox)
            if parsed is not None:
                (fresh if claim.deliveries <= 1 else suspects).append(parsed)
        texts = sum(len(request.texts) for _, request in fresh)
        self._flowing_until = time.monotonic() + _FLOWING_S if texts > 1 else 0.0
        for group in [fresh, *([s] for s in suspects)]:
            if self.gate is not None and group:  # issue 20 hook
                group = self.gate(group, outbox)
            facts = self._embed(group, outbox) if group else None
            self._unsent = outbox  # kept until written: a broker outage must not lose it
            outbox.commit(self.claims.client)
            self._unsent = None
            if facts is not None and self.observe is not None:
                self.observe(replace(facts, answered_at=time.time()))

    def _open(self, claim: Claimed, outbox: Outbox) -> tuple[Envelope, EmbedRequest] | None:
        """The message's envelope and request, or None after dealing with what is wrong."""
        now = time.time()
        try:
            envelope = open_envelope(claim.raw)
        except GarbageMessageError as exc:
            log.warning("message_dead_lettered", queue=self.queue, reason=str(exc))
            if not claim.dead:
                outbox.dead_letter(claim.raw, str(exc), at=now)
            return None
        if claim.dead:
            log.warning("message_dead_lettered", queue=self.queue, task_id=envelope.task_id,
                        reason="too many deliveries")
            outbox.notify(envelope, DeadLetteredError(
                f"message {envelope.task_id} on {self.queue} was delivered more than "
                f"{self.settings.max_deliveries} times and each time its worker process died; "
                f"it is in the dead letters: embedq dead-letters list --queue {self.queue}"))
            return None
        try:
            request = self.read(envelope)  # issue 20 hook (was envelope.request())
            refused = self.guard(request)
            if refused is not None:
                raise PayloadError(f"message {envelope.task_id}: {refused}")
            return envelope, request
        except EmbedqError as exc:  # issue 20: was PayloadError (a short call's typed refusals)
            log.warning("message_dead_lettered", queue=self.queue, task_id=envelope.task_id,
                        reason=str(exc))
            outbox.dead_letter(claim.raw, str(exc), at=now)
            outbox.notify(envelope, exc)
            return None

    def _embed(self, group: list[tuple[Envelope, EmbedRequest]], outbox: Outbox) -> BatchFacts:
        """One pass of the model over a group; every message gets its result or its error."""
        claimed_at = time.time()
        started = time.perf_counter()
        try:
            with self.compute:
                outcomes = self.handle([request for _, request in group])
        except Exception as exc:  # a bug or out of memory: fail these messages, keep serving
            log.exception("batch_failed", queue=self.queue, messages=len(group))
            outcomes = [EmbedqError(f"worker error: {exc!r}")] * len(group)
        runtime = time.perf_counter() - started
        texts = sum(len(request.texts) for _, request in group)
        for (envelope, _), outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, EmbedResult):
                timings = {**outcome.timings_ms, "total": round(runtime * 1e3, 3)}
                outcome = replace(outcome, worker=self.target.hostname, queue=self.queue,
                                  timings_ms=timings)
                outbox.succeed(envelope, outcome, runtime)
            else:
                log.warning("embed_failed", task_id=envelope.task_id, queue=self.queue,
                            error=str(outcome))
                outbox.fail(envelope, outcome, runtime)
        first = group[0][1]
        log.info("batch_embedded", queue=self.queue, route=first.route, model=first.model,
                 precision=first.precision, messages=len(group), batch_texts=texts,
                 latency_ms=round(runtime * 1e3, 3),
                 task_ids=[envelope.task_id for envelope, _ in group])
        return BatchFacts(
            queue=self.queue, messages=len(group), texts=texts,
            failed=sum(not isinstance(o, EmbedResult) for o in outcomes), seconds=runtime,
            enqueued_at=tuple(e.enqueued_at for e, _ in group if e.enqueued_at is not None),
            claimed_at=claimed_at)
