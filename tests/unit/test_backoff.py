"""The background loops' backoff: doubling, jittered, and blind to the application's `random`."""

from __future__ import annotations

import random

from embedq.tasks.loops import Backoff


def test_waits_double_up_to_the_cap_jittered_down_to_half() -> None:
    backoff = Backoff(first_s=0.1, max_s=0.4)
    waits = [backoff.next() for _ in range(5)]
    for wait, step in zip(waits, (0.1, 0.2, 0.4, 0.4, 0.4), strict=True):
        assert step / 2 <= wait <= step
    backoff.reset()
    assert backoff.next() <= 0.1


def test_the_jitter_leaves_the_module_level_generator_alone() -> None:
    """A producer's thread backing off must not move a seeded application's random sequence."""
    random.seed(7)
    expected = [random.random() for _ in range(3)]
    random.seed(7)
    backoff = Backoff()
    for _ in range(10):
        backoff.next()
    assert [random.random() for _ in range(3)] == expected
