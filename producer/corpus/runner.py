"""The loop of a corpus job: read, check, embed, commit, in input order with bounded memory.

The window bounds the work a crash can cost. Rows that have been sent but are not yet durable
never exceed it: half of it is in flight on the queue, and resolved rows are committed whenever
they reach the other half. So a ``kill -9`` at any moment loses at most one window of embedding
work, and an interrupt (Ctrl-C, SIGTERM, a scheduler stopping the task) loses only what is in
flight, because every resolved row is committed on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import structlog

from embedq.producer.client import EmbeddingClient
from embedq.producer.corpus import killpoints
from embedq.producer.corpus.formats import Source
from embedq.producer.corpus.ledger import Ledger
from embedq.producer.corpus.progress import ProgressCallback, ProgressMeter
from embedq.producer.corpus.spool import Spool
from embedq.producer.corpus.stream import detailed_blocks
from embedq.tasks.validation import text_problem

_log = structlog.get_logger("embedq.corpus")


@dataclass(frozen=True, slots=True)
class Plan:
    """How a run sends its rows."""

    use_case: str | None
    chunk_size: int
    in_flight_chunks: int
    commit_rows: int
    timeout: float | None

    @property
    def window(self) -> int:
        """Most rows sent but not yet durable at any moment."""
        return self.in_flight_chunks * self.chunk_size + self.commit_rows


def plan_for(use_case: str | None, chunk_size: int, window: int,
             timeout: float | None) -> Plan:
    """Half the window in flight (whole chunks), the rest the commit size."""
    in_flight = max(1, window // chunk_size // 2)
    return Plan(use_case, chunk_size, in_flight, max(1, window - in_flight * chunk_size), timeout)


class Run:
    """One run of a job, from the durable end of the spool to the end of the input."""

    def __init__(self, client: EmbeddingClient, source: Source, spool: Spool, ledger: Ledger,
                 plan: Plan, on_progress: ProgressCallback | None) -> None:
        self._client = client
        self._source = source
        self._spool = spool
        self._ledger = ledger
        self._plan = plan
        self._on_progress = on_progress
        self._meter = ProgressMeter(source.total_rows, source.size)

    def __call__(self) -> None:
        plan = self._plan
        blocks = detailed_blocks(self._client, self._texts(), plan.use_case,
                                 chunk_size=plan.chunk_size, max_in_flight=plan.in_flight_chunks,
                                 timeout=plan.timeout)
        try:
            for block in blocks:
                self._ledger.resolve(block)
                self._commit(plan.commit_rows)
                self._report()
        except BaseException:
            self._keep_resolved()
            raise
        self._commit(1)
        self._report()

    def _texts(self) -> Iterator[str]:
        """The good texts, in order; rows that fail a check are resolved here, never sent."""
        ledger, max_chars = self._ledger, self._client.settings.max_text_chars
        for batch in self._source.batches(ledger.read_end):
            for i, (row_id, text) in enumerate(zip(batch.ids, batch.texts, strict=True)):
                offset = batch.start + i
                problem = batch.problems.get(i)
                if problem is None and (about_text := text_problem(text, max_chars)):
                    problem = f"text {about_text}"
                if problem is None:
                    ledger.submitted(offset, row_id)
                    yield str(text)
                else:
                    ledger.rejected(offset, row_id, problem)
            self._commit(self._plan.commit_rows)  # a long stretch of bad rows commits too

    def _commit(self, minimum: int) -> None:
        if self._ledger.ready < minimum:
            return
        part = self._ledger.take_part()
        if part is not None:
            self._spool.commit(part)
            killpoints.reached(f"after-part-{part.end}")
            _log.debug("corpus commit", rows_durable=part.end, rows=part.end - part.start,
                       embedded=len(part.ids), failed=len(part.err_rows))

    def _keep_resolved(self) -> None:
        """On the way out of a failed or interrupted run: make resolved rows durable, without
        hiding the first error behind a second one."""
        try:
            self._commit(1)
        except Exception as exc:  # the original error is re-raised by the caller
            _log.warning("corpus commit on exit failed", error=str(exc))

    def _report(self) -> None:
        if self._on_progress is not None:
            ledger = self._ledger
            self._on_progress(self._meter.snapshot(ledger.frontier, self._source.bytes_read(),
                                                   ledger.failed, ledger.cached))
