"""One queue's consumer in one worker process: wait, claim a batch, embed it, reply, repeat.

This replaces Celery's per-task consumer for embed queues: a free process takes everything
waiting, up to the batching policy's budget of texts (`embedq.worker.batching`), as one batch,
so batches grow with load by themselves and no process waits on another's batch.

Work nobody waits for is never computed. Every message carries a deadline (embedq's producer
writes one per row, a plain Celery producer may send ``expires``): the claim clears messages
whose callers have all left, this loop drops what expired meanwhile or was cancelled by its
caller, and the model step asks again before each forward pass. Dropped texts are counted
(``embedq_expired_texts_total``) and logged once per batch.

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

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog

from embedq.config.errors import DeadLetteredError, EmbedqError, PayloadError
from embedq.tasks.loops import Loop
from embedq.tasks.schema import EmbedRequest, EmbedResult
from embedq.tasks.wire import DROPPED_ROW, Envelope, GarbageMessageError, open_envelope
from embedq.worker.batching import BatchPolicy
from embedq.worker.claims import Claimed, QueueClaims, cancelled_rows
from embedq.worker.metrics import BatchFacts
from embedq.worker.replies import Outbox, ReplyTarget
from embedq.worker.service import Handled
from embedq.worker.service_rate import ServiceRate

log = structlog.get_logger(__name__)

Outcome = EmbedResult | EmbedqError
Handler = Callable[[list[EmbedRequest], Callable[[], bool]], Handled]  # requests, halt
Guard = Callable[[EmbedRequest], str | None]  # why a request does not belong on this queue
Parsed = tuple[Envelope, EmbedRequest]
Reader = Callable[[Envelope], EmbedRequest]  # issue 20: a Celery short call or a full request
Gate = Callable[[list[Parsed], Outbox], list[Parsed]]  # issue 20: drops revoked Celery tasks
_FLOWING_S = 1.0  # a batch of several texts within this long means traffic is flowing
# A blocking wait sees only the interactive list (Redis cannot move atomically from either of
# two lists), so while bulk work flows an idle consumer waits this long at most, not poll_s.
_BULK_POLL_S = 0.01
_BULK_FLOWING_S = 2.0
# The rate is published when it moved by this share, else at most this often: producers read it
# every `producer.load.STALE_S` at most, and one HSET per batch is a broker command per request.
_RATE_MOVED = 0.2
_RATE_EVERY_S = 0.25
# The rate is texts per second of a whole serving cycle while busy (claim, linger, compute),
# so that the live consumers' rates add up to what the pool really serves under load.


def _row_deadlines(envelope: Envelope, request: EmbedRequest, cancelled: list[int] | None
                   ) -> list[float] | None:
    """Each row's deadline; a cancelled row's is 0 (long past), so it is dropped like one."""
    rows = len(request.texts)
    deadlines = request.deadlines
    if deadlines is None and envelope.deadline is not None:
        deadlines = [envelope.deadline] * rows
    if cancelled is not None:
        deadlines = list(deadlines) if deadlines is not None else [float("inf")] * rows
        for row in (cancelled or range(rows)):
            if 0 <= row < rows:
                deadlines[row] = 0.0
    return deadlines


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
    policy: BatchPolicy
    compute: threading.Lock
    poll_s: float
    sweep_every_s: float
    observe: Callable[[BatchFacts], None] | None = None
    read: Reader = Envelope.request  # issue 20 hook (worker.celery_requests.message_reader)
    gate: Gate | None = None  # issue 20 hook (worker.celery_control.celery_gate)
    _unsent: Outbox | None = field(default=None, init=False)
    _interrupted: bool = field(default=False, init=False)
    _flowing_until: float = field(default=0.0, init=False)
    _swept_at: float = field(default=0.0, init=False)
    _rate: ServiceRate = field(default_factory=ServiceRate, init=False)
    _rate_said: float = field(default=0.0, init=False)  # the rate last published
    _rate_said_at: float = field(default=float("-inf"), init=False)  # monotonic
    _busy_since: float = field(default=0.0, init=False)  # perf_counter: this cycle's start
    _bulk_until: float = field(default=0.0, init=False)  # monotonic: bulk work seen lately
    _stopping: threading.Event | None = field(default=None, init=False)  # `run`'s

    @property
    def clean(self) -> bool:
        """True when nothing this consumer claimed is left unanswered."""
        return not self._interrupted and self._unsent is None

    @property
    def queue(self) -> str:
        """The queue this consumer serves."""
        return self.claims.queue

    def run(self, stopping: threading.Event) -> None:
        """The consumer loop; returns once ``stopping`` is set and the batch in hand is settled:
        the forward pass in progress finishes, what it completed is answered, and the claimed
        messages it did not complete go back to the head of their queue (`_give_back`)."""
        self._stopping = stopping
        loop = Loop("broker", context={"queue": self.queue})
        while not loop.turn(self._start, stopping) and not stopping.is_set():
            pass
        while not stopping.is_set():
            if not loop.turn(self.step, stopping):
                self._interrupted = True

    def _start(self) -> None:
        restored = self.claims.sweep(everything=True)
        log.info("consumer_started", queue=self.queue, consumer=self.claims.consumer,
                 restored=restored)

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
        if now - self._swept_at > self.sweep_every_s:
            self._swept_at = now
            restored = self.claims.sweep()
            if restored:
                log.warning("messages_restored", queue=self.queue, count=restored,
                            note="claimed by a consumer that died; back at the head of the queue")
        self._busy_since = time.perf_counter()
        now = time.monotonic()
        bulk = now < self._bulk_until
        # A busy queue is claimed from at once, without blocking first. Between lone requests
        # (the last claim found both lists empty, the last batch one text) the consumer blocks
        # at once instead: no claim that finds nothing per request. While traffic flows the
        # claim comes first (measured: blocking first there cost throughput and p99 at 16
        # threads), and while bulk work flows too, as only a claim sees the bulk list.
        lone = self.claims.drained and now >= self._flowing_until
        claims = self._claim() if bulk or not lone else []
        if not claims:
            if not self.claims.wait(_BULK_POLL_S if bulk else self.poll_s):
                self.claims.drained = False  # idle: the next turn claims, finding bulk work
                return
            self._busy_since = time.perf_counter()  # idle until now
            claims = self._claim()
        self.serve(claims)

    def _claim(self) -> list[Claimed]:
        claims = self.claims.claim(self.policy)
        if any(c.bulk for c in claims):
            self._bulk_until = time.monotonic() + _BULK_FLOWING_S
        texts = sum(c.texts for c in claims if c.state == "live")
        if (self.policy.linger(claimed_texts=texts,
                               flowing=time.monotonic() < self._flowing_until,
                               suspects=any(c.deliveries > 1 for c in claims))
                and self.claims.wait(self.policy.linger_s)):
            claims += self.claims.claim(self.policy, already=len(claims), texts=texts)
        return claims

    def serve(self, claims: list[Claimed]) -> None:
        """Embed a claimed batch and write every reply and acknowledgement."""
        outbox = Outbox(self.target)
        now = time.time()
        fresh, suspects, expired = self._sort(claims, outbox, now)
        texts = sum(len(request.texts) for _, request in fresh)
        self._flowing_until = time.monotonic() + _FLOWING_S if texts > 1 else 0.0
        groups = [fresh, *suspects]
        claimed = {claim.raw: claim for claim in claims}
        for index, group in enumerate(groups):
            if self.gate is not None and group:  # issue 20 hook
                group = self.gate(group, outbox)
            if group and self._halting():  # stopping: none of it started, all of it goes back
                self._give_back(group, outbox, claimed)
                group = []
            facts = self._embed(group, outbox, expired, claimed) if group else None
            # The last commit settles every claim in hand: the in-flight list goes in one DEL.
            outbox.settles_all = index == len(groups) - 1
            self._unsent = outbox  # kept until written: a broker outage must not lose it
            outbox.commit(self.claims.client)
            self._unsent = None
            if facts is None and expired:
                log.info("batch_dropped", queue=self.queue, expired_texts=expired)
                facts = BatchFacts(queue=self.queue, messages=0, texts=0, failed=0, seconds=0.0,
                                   enqueued_at=(), claimed_at=now, expired=expired)
            if facts is not None:
                expired = 0  # counted once, with the first group
                if self.observe is not None:
                    self.observe(replace(facts, answered_at=time.time()))

    def _sort(self, claims: list[Claimed], outbox: Outbox, now: float
              ) -> tuple[list[Parsed], list[list[Parsed]], int]:
        """Fresh messages (one batch), suspects (a batch each) and the texts dropped: claims
        nobody waits for are acknowledged uncomputed, the rest carry their rows' deadlines."""
        expired = 0
        opened: list[tuple[Claimed, Parsed]] = []
        for claim in claims:
            if claim.state == "expired":
                outbox.ack(claim.raw)  # nobody waits: not even a reply
                expired += claim.texts
            elif (parsed := self._open(claim, outbox)) is not None:
                opened.append((claim, parsed))
        marks = {envelope.task_id: rows for claim, (envelope, _) in opened
                 if (rows := cancelled_rows(claim.cancel)) is not None}
        if marks:
            outbox.forget_cancels(list(marks))  # cleared with the batch's acknowledgements
        fresh: list[Parsed] = []
        suspects: list[list[Parsed]] = []
        for claim, (envelope, request) in opened:
            deadlines = _row_deadlines(envelope, request, marks.get(envelope.task_id))
            if deadlines is not None and all(d <= now for d in deadlines):
                outbox.revoked(envelope, "cancelled" if envelope.task_id in marks else "expired")
                expired += len(request.texts)
                continue
            parsed = (envelope, replace(request, deadlines=deadlines))
            if claim.deliveries <= 1:
                fresh.append(parsed)
            else:
                suspects.append([parsed])
        return fresh, suspects, expired

    def _open(self, claim: Claimed, outbox: Outbox) -> Parsed | None:
        """The message's envelope and request, or None after dealing with what is wrong."""
        now = time.time()
        try:
            envelope = open_envelope(claim.raw)
        except GarbageMessageError as exc:
            log.warning("message_dead_lettered", queue=self.queue, reason=str(exc))
            if not claim.dead:  # else the claim script has recorded it already
                outbox.dead_letter(claim.raw, str(exc), at=now)
            return None
        if claim.dead:  # the claim script has put it in the dead letters already
            log.warning("message_dead_lettered", queue=self.queue, task_id=envelope.task_id,
                        reason=f"{claim.state}: {claim.deliveries} deliveries")
            outbox.notify(envelope, DeadLetteredError(
                f"message {envelope.task_id} on {self.queue} was delivered more than "
                f"{self.policy.max_deliveries} times and each time its worker process died; "
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

    def _halting(self) -> bool:
        """Is this consumer stopping (no further forward pass may start)?"""
        return self._stopping is not None and self._stopping.is_set()

    def _give_back(self, group: list[Parsed], outbox: Outbox, claimed: dict[bytes, Claimed]
                   ) -> None:
        """Hand messages this stopping consumer did not complete back to their queue (at the
        outbox's commit, atomically with the batch's replies); nobody gets a reply for them."""
        for envelope, _ in reversed(group):  # each pushed to the head: the oldest ends first
            claim = claimed.get(envelope.raw)
            outbox.give_back(envelope, bulk=claim is not None and claim.bulk,
                             deliveries=claim.deliveries if claim is not None else 1)
        log.info("batch_handed_back", queue=self.queue, messages=len(group),
                 texts=sum(len(request.texts) for _, request in group),
                 note="the worker is stopping: back at the head of the queue, uncomputed")

    def _embed(self, group: list[Parsed], outbox: Outbox, expired: int,
               claimed: dict[bytes, Claimed]) -> BatchFacts | None:
        """One run of the model over a group; every message gets its result or its error, or,
        when the worker stops meanwhile, goes back to its queue if its texts were not all
        computed. ``expired`` texts of the batch were dropped before it (counted with it).
        None when nothing was answered (everything went back)."""
        claimed_at = time.time()
        started = time.perf_counter()
        unfinished: frozenset[int] = frozenset()
        try:
            with self.compute:
                handled = self.handle([request for _, request in group], self._halting)
            outcomes, dropped, unfinished = handled
        except Exception as exc:  # a bug or out of memory: fail these messages, keep serving
            log.exception("batch_failed", queue=self.queue, messages=len(group))
            outcomes, dropped = [EmbedqError(f"worker error: {exc!r}")] * len(group), 0
        runtime = time.perf_counter() - started
        if unfinished:
            self._give_back([group[i] for i in sorted(unfinished)], outbox, claimed)
            kept = [i for i in range(len(group)) if i not in unfinished]
            group, outcomes = [group[i] for i in kept], [outcomes[i] for i in kept]
            if not group:
                return None
        texts = sum(len(request.texts) for _, request in group)
        answered = time.time()
        late = 0
        for (envelope, request), outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, EmbedResult):
                timings = {**outcome.timings_ms, "total": round(runtime * 1e3, 3)}
                outcome = replace(outcome, worker=self.target.hostname, queue=self.queue,
                                  timings_ms=timings)
                skipped = {row for row, why in outcome.errors if why == DROPPED_ROW}
                late += sum(0 < d <= answered and row not in skipped
                            for row, d in enumerate(request.deadlines or ()))
                outbox.succeed(envelope, outcome, runtime)
            else:
                log.warning("embed_failed", task_id=envelope.task_id, queue=self.queue,
                            error=str(outcome))
                outbox.fail(envelope, outcome, runtime)
        computed = texts - dropped
        cycle = time.perf_counter() - self._busy_since  # claim, linger, compute: all it costs
        if computed > 0 and self._busy_since and cycle > 0 and not unfinished:
            self._rate.observe(computed / cycle, full=texts >= self.policy.claim_texts)
            now = time.monotonic()
            rate = self._rate.value
            if (now - self._rate_said_at >= _RATE_EVERY_S
                    or abs(rate - self._rate_said) > _RATE_MOVED * self._rate_said):
                outbox.publish_rate(self.claims.consumer, rate)
                self._rate_said, self._rate_said_at = rate, now
        first = group[0][1]
        log.info("batch_embedded", queue=self.queue, route=first.route, model=first.model,
                 precision=first.precision, messages=len(group), batch_texts=computed,
                 expired_texts=dropped + expired, late_texts=late,
                 latency_ms=round(runtime * 1e3, 3),
                 task_ids=[envelope.task_id for envelope, _ in group])
        return BatchFacts(
            queue=self.queue, messages=len(group), texts=computed,
            failed=sum(not isinstance(o, EmbedResult) for o in outcomes), seconds=runtime,
            enqueued_at=tuple(e.enqueued_at for e, _ in group if e.enqueued_at is not None),
            claimed_at=claimed_at, expired=dropped + expired, late=late)
