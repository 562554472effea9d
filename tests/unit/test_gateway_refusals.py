"""The gateway's refusal log sampling: pure logic."""

from __future__ import annotations

import time

from embedq.gateway.refusals import RefusalSampler


def test_a_burst_of_refusals_is_one_line_a_second_that_says_how_many():
    sampler = RefusalSampler(interval_s=0.2)
    assert sampler.take("search", "overloaded") == 1  # the first is logged at once
    assert [sampler.take("search", "overloaded") for _ in range(50)] == [0] * 50
    assert sampler.take("etl", "overloaded") == 1  # another use case: its own line
    assert sampler.take("search", "no_live_worker") == 1  # another kind: its own line
    time.sleep(0.25)
    assert sampler.take("search", "overloaded") == 51  # the 50 held back, and itself
    assert sampler.take("search", "overloaded") == 0
