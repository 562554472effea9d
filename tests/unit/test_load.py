"""The producer's load estimate for shedding: pure logic, no Redis."""

from __future__ import annotations

from typing import cast

from embedq.producer.jobs import Job
from embedq.producer.load import LoadBook, live_rates, refuse_after
from embedq.producer.outstanding import Outstanding, SentMessage
from embedq.worker.service_rate import ServiceRate


def test_only_live_consumers_rates_count():
    rates = {b"a": b"300", b"b": b"200", b"stopped": b"100000"}
    counted, live = live_rates(rates, [b"a", b"b"])
    assert sorted(counted) == [b"200", b"300"]
    assert live == 2
    assert live_rates(rates, []) == ([], 0)


def test_the_wait_is_backlog_over_the_live_rate():
    book = LoadBook()
    assert book.wait_s("q") is None  # never read: admit
    book.record("q", backlog=1000, rates=[b"300", b"200"], consumers=2)
    wait = book.wait_s("q")
    assert wait is not None
    assert 1.9 < wait <= 2.0
    book.record("q", backlog=10, rates=[], consumers=0)
    assert book.wait_s("q") is None  # no live consumer: no rate to judge by


def test_work_this_process_waits_for_counts_when_the_queue_shows_less():
    book = LoadBook()
    book.record("q", backlog=0, rates=[b"500"], consumers=1)  # all claimed: queue empty
    assert book.wait_s("q") == 0.0
    wait = book.wait_s("q", own_texts=250)  # ...but still being computed
    assert wait is not None
    assert 0.49 < wait <= 0.5
    book.record("q", backlog=1000, rates=[b"500"], consumers=1)
    assert 1.9 < (book.wait_s("q", own_texts=250) or 0) <= 2.0  # the more of the two


class _Waiting:
    """A caller still waiting for its answer (all a message asks of its jobs)."""

    def done(self) -> bool:
        return False


def _sent(task_id: str, texts: int, *, bulk: bool = False, deadline: float = float("inf")
          ) -> SentMessage:
    parts = [(cast(Job, _Waiting()), [0], [0])]
    return SentMessage(task_id, "q", b"", parts, key="q.bulk" if bulk else "", texts=texts,
                       deadline=deadline)


def test_outstanding_counts_interactive_texts_until_answered_or_forgotten():
    table = Outstanding()
    table.add([_sent("a", 3), _sent("b", 5), _sent("bulk", 100, bulk=True)])
    table.add([_sent("a", 3)])  # sent again (lost): counted once
    assert table.texts("q") == 8
    table.pop("a")
    table.pop("a")  # a duplicate reply
    assert table.texts("q") == 5
    table.add([_sent("late", 7, deadline=0.0)])  # its callers' deadline has passed
    assert table.texts("q") == 12
    table.forget_abandoned()
    assert table.texts("q") == 5
    table.drain()
    assert table.texts("q") == 0


def test_small_batches_never_pull_the_service_rate_down():
    rate = ServiceRate()
    rate.observe(500.0, full=True)
    rate.observe(100.0, full=False)  # a short queue's small batch: not the capacity
    assert rate.value == 500.0
    rate.observe(600.0, full=False)  # but a faster one lifts it
    assert rate.value > 500.0
    lifted = rate.value
    rate.observe(300.0, full=True)  # a full batch that ran slower: the pool is slower
    assert rate.value < lifted
    first = ServiceRate()
    first.observe(80.0, full=False)  # the first measurement is taken whatever its size
    assert first.value == 80.0


def test_refusal_leaves_headroom_and_retry_after_whole_seconds():
    assert refuse_after(None, 2.0, 0.25) is None
    assert refuse_after(0.5, 2.0, 0.25) is None  # exactly the headroom: admitted
    assert refuse_after(0.6, 2.0, 0.25) == 1.0
    assert refuse_after(100.0, 2.0, 0.25) == 100.0
