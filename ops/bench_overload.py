"""Goodput under a spike: what callers with deadlines get at 1x, 2x and 5x a worker's capacity.

One worker serves a private route with the cache off. Its capacity is measured in the same run,
before and after the spikes, as the texts per second a saturated ``embed_many`` gets (full
batches): the most any spike could get out of the worker.
Then an asyncio producer offers unique short texts at a fixed rate (a multiple of that
capacity) for a while, every request with the same deadline, and counts what each caller got:
an answer within its deadline (goodput), an `OverloadedError` (refused at once, nothing
enqueued), an `EmbedTimeoutError` at the deadline, or anything else. It also reports how late
the latest caller was resolved past its deadline, how old the oldest queued message is one
second after the spike, and, from the worker's log, how many texts it dropped uncomputed and
how many it computed for callers who had already left.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from embedq.config.errors import EmbedTimeoutError, OverloadedError
from embedq.ops.bench_stack import WorkerStack
from embedq.producer.client import EmbeddingClient

ROUTE = "bench"
_TICK_S = 0.005  # the open-loop generator's resolution


@dataclass
class SpikeFigures:
    """What one offered load got."""

    label: str
    offered_per_s: float
    seconds: float
    sent: int
    outcomes: dict[str, int]
    goodput_per_s: float
    goodput_x_capacity: float
    answered_p50_ms: float | None
    answered_p99_ms: float | None
    worst_past_deadline_ms: float
    loop_lag_ms: float
    oldest_queued_after_s: float | None
    computed_texts: int
    mean_batch: float
    expired_texts: int
    late_texts: int
    late_share: float
    notes: list[str] = field(default_factory=list)


def capacity(client: EmbeddingClient, texts: Iterator[str], count: int) -> float:
    """Texts per second the worker serves saturated, the larger of two measures over ``count``
    unique short texts each: ``embed_many`` (full bulk chunks) and 512 interactive callers that
    each send the next text as soon as theirs is answered (no deadline pressure)."""
    started = time.perf_counter()
    served = sum(len(block) for block in client.embed_many(
        [next(texts) for _ in range(count)], ROUTE, progress=False))
    bulk = served / (time.perf_counter() - started)

    async def closed_loop() -> None:
        batch = [next(texts) for _ in range(count)]
        source = iter(batch)

        async def caller() -> None:
            for text in source:
                await client.aembed([text], ROUTE, timeout=120)

        await asyncio.gather(*(caller() for _ in range(512)))

    started = time.perf_counter()
    asyncio.run(closed_loop())
    return max(bulk, count / (time.perf_counter() - started))


def _classify(exc: BaseException) -> str:
    if isinstance(exc, OverloadedError):
        return "overloaded"
    if isinstance(exc, EmbedTimeoutError):
        return "timeout"
    return type(exc).__name__


def spike(client: EmbeddingClient, texts: Iterator[str], *, rate: float, seconds: float,
          deadline_s: float) -> tuple[Counter[str], list[float], float, int, float]:
    """Offer ``rate`` single-text requests per second for ``seconds``; returns the outcomes,
    the answered latencies within the deadline, the worst resolution past a deadline (s), how
    many were sent and the event loop's worst delay (s): a caller's timer cannot fire on time
    in a loop that runs late, whatever the workers do."""
    outcomes: Counter[str] = Counter()
    good: list[float] = []
    worst = 0.0

    async def one(text: str) -> None:
        nonlocal worst
        began = time.perf_counter()
        kind = "answered"
        try:
            await client.aembed([text], ROUTE, timeout=deadline_s)
        except Exception as exc:  # every outcome is counted, none is lost; the exception is
            kind = _classify(exc)  # not kept: its traceback would make a reference cycle
        took = time.perf_counter() - began
        if kind == "answered" and took > deadline_s:
            kind = "answered late"
        outcomes[kind] += 1
        if kind == "answered":
            good.append(took)
        worst = max(worst, took - deadline_s)

    gc.collect()  # as a latency-minded service does once started (README, "Under load"): what
    gc.freeze()  # exists now is long-lived, and full collections skip it
    sent, lag = asyncio.run(open_loop(lambda: one(next(texts)), rate, seconds))
    return outcomes, good, worst, sent, lag


async def open_loop(request: Callable[[], Coroutine[Any, Any, None]], rate: float,
                    seconds: float) -> tuple[int, float]:
    """Start ``request()`` ``rate`` times a second for ``seconds`` (whether or not earlier ones
    are done: an open loop, as independent users send); wait for all. Returns how many were
    started and the event loop's worst delay (s)."""
    tasks: set[asyncio.Task[None]] = set()  # only the unfinished: a finished one is freed
    started = time.perf_counter()
    sent, lag = 0, 0.0
    while (now := time.perf_counter() - started) < seconds:
        due = int(now * rate) - sent
        for _ in range(due):
            task = asyncio.ensure_future(request())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent += due
        slept = time.perf_counter()
        await asyncio.sleep(_TICK_S)
        lag = max(lag, time.perf_counter() - slept - _TICK_S)  # the loop's own delay
    while tasks:
        await asyncio.gather(*list(tasks))
    return sent, lag


def _log_totals(stack: WorkerStack, since_line: int) -> tuple[int, int, int, int]:
    """Computed, expired and late texts, and batches computed, from the worker's log lines
    after ``since_line``."""
    computed = expired = late = batches = 0
    for line in stack.log.read_text(errors="replace").splitlines()[since_line:]:
        if '"batch_embedded"' in line or '"batch_dropped"' in line:
            row = json.loads(line)
            computed += row.get("batch_texts", 0)
            expired += row.get("expired_texts", 0)
            late += row.get("late_texts", 0)
            batches += row.get("batch_texts", 0) > 0
    return computed, expired, late, batches


def measure_spike(stack: WorkerStack, client: EmbeddingClient, texts: Iterator[str], *,
                  label: str, cap: float, factor: float, seconds: float,
                  deadline_s: float) -> SpikeFigures:
    """One spike at ``factor`` x ``cap``, with every figure of `SpikeFigures`."""
    first = stack.log_lines()
    outcomes, good, worst, sent, lag = spike(client, texts, rate=cap * factor,
                                             seconds=seconds, deadline_s=deadline_s)
    time.sleep(1.0)
    stats = client.route_status(ROUTE).queue
    computed, expired, late, batches = _log_totals(stack, first)
    answered = outcomes.get("answered", 0)
    pct = np.percentile(np.array(good) * 1e3, [50, 99]) if good else [None, None]
    return SpikeFigures(
        label=label, offered_per_s=round(cap * factor, 1), seconds=seconds, sent=sent,
        outcomes=dict(outcomes), goodput_per_s=round(answered / seconds, 1),
        goodput_x_capacity=round(answered / seconds / cap, 3),
        answered_p50_ms=None if pct[0] is None else round(float(pct[0]), 1),
        answered_p99_ms=None if pct[1] is None else round(float(pct[1]), 1),
        worst_past_deadline_ms=round(worst * 1e3, 1), loop_lag_ms=round(lag * 1e3, 1),
        oldest_queued_after_s=stats.oldest_age_s, computed_texts=computed,
        mean_batch=round(computed / batches, 1) if batches else 0.0,
        expired_texts=expired, late_texts=late,
        late_share=round(late / computed, 4) if computed else 0.0)


def with_bulk(stack: WorkerStack, client: EmbeddingClient, texts: Iterator[str], bulk: list[str],
              *, cap: float, seconds: float, deadline_s: float) -> tuple[SpikeFigures, str]:
    """A 2x spike while ``embed_many`` runs over ``bulk`` on the same queue; the bulk job's
    own report says whether every row came back (finite, unit length) and how long it took."""
    result: dict[str, object] = {}

    def run_bulk() -> None:
        started = time.perf_counter()
        try:
            blocks = list(client.embed_many(bulk, ROUTE, progress=False))
            vectors = np.concatenate(blocks)
            norms = np.linalg.norm(vectors, axis=1)
            result["rows"] = len(vectors)
            result["ok"] = bool(np.isfinite(vectors).all() and np.allclose(norms, 1, atol=1e-3))
        except Exception as exc:  # reported, not raised: the spike's figures still count
            result["error"] = repr(exc)
        result["seconds"] = round(time.perf_counter() - started, 1)

    worker = threading.Thread(target=run_bulk)
    worker.start()
    time.sleep(2.0)  # the bulk job is under way before the spike
    figures = measure_spike(stack, client, texts, label="2x spike + bulk", cap=cap, factor=2,
                            seconds=seconds, deadline_s=deadline_s)
    worker.join()
    report = (f"bulk embed_many of {len(bulk):,}: {result.get('rows', 0):,} rows, all correct: "
              f"{result.get('ok', False)}, {result.get('seconds')} s"
              + (f", error {result['error']}" if "error" in result else ""))
    return figures, report


def print_figures(rows: list[SpikeFigures]) -> None:
    """One line per spike, then the outcome counts."""
    print(f"{'load':22} {'offered/s':>9} {'sent':>7} {'good/s':>7} {'x cap':>6} {'p50':>6} "
          f"{'p99':>6} {'past dl ms':>10} {'loop lag':>8} {'oldest s':>8} {'late %':>6}")
    for r in rows:
        oldest = "" if r.oldest_queued_after_s is None else f"{r.oldest_queued_after_s:.2f}"
        print(f"{r.label:22} {r.offered_per_s:9.1f} {r.sent:7d} {r.goodput_per_s:7.1f} "
              f"{r.goodput_x_capacity:6.3f} {r.answered_p50_ms or '':>6} "
              f"{r.answered_p99_ms or '':>6} {r.worst_past_deadline_ms:10.1f} "
              f"{r.loop_lag_ms:8.1f} {oldest:>8} "
              f"{100 * r.late_share:6.2f}")
        print(f"{'':22} outcomes {r.outcomes}; texts computed {r.computed_texts} (mean batch "
              f"{r.mean_batch}), dropped "
              f"uncomputed {r.expired_texts}, computed for callers gone {r.late_texts}")


def as_json(rows: list[SpikeFigures]) -> str:
    """The figures as JSON, for a file next to the README's numbers."""
    return json.dumps([asdict(r) for r in rows], indent=2)
