"""The producer's load estimate for shedding: pure logic, no Redis."""

from __future__ import annotations

from embedq.producer.load import LoadBook, live_rates, refuse_after


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


def test_refusal_leaves_headroom_and_retry_after_whole_seconds():
    assert refuse_after(None, 2.0, 0.25) is None
    assert refuse_after(0.5, 2.0, 0.25) is None  # exactly the headroom: admitted
    assert refuse_after(0.6, 2.0, 0.25) == 1.0
    assert refuse_after(100.0, 2.0, 0.25) == 100.0
