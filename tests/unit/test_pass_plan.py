"""How a batch is cut into forward passes (`PassPolicy.plan`) and what a pass costs (`PassCost`)."""

from __future__ import annotations

import itertools
import random

import pytest

from embedq.worker.batching import PassPolicy
from embedq.worker.pass_cost import PRIOR_TOKENS, PassCost


def _cost(passes: list[list[int]], counts: list[int], overhead: float, limit: int) -> float:
    return sum(overhead + len(p) * min(max(counts[i] for i in p), limit) for p in passes)


def _best_contiguous(lengths: list[int], policy: PassPolicy, overhead: float) -> float:
    """Brute force over every cut of the length-sorted texts."""
    ordered = sorted(lengths, reverse=True)
    best = float("inf")
    for cuts in itertools.product((False, True), repeat=len(ordered) - 1):
        passes, current = [], [ordered[0]]
        for length, cut in zip(ordered[1:], cuts, strict=True):
            if cut:
                passes.append(current)
                current = []
            current.append(length)
        passes.append(current)
        if all(len(p) <= policy.max_texts and (len(p) == 1 or len(p) * p[0] <= policy.max_tokens)
               for p in passes):
            best = min(best, sum(overhead + len(p) * p[0] for p in passes))
    return best


def test_a_mixed_batch_is_cut_by_length_not_filled_to_the_count():
    # 4 texts of 30 tokens and 28 of 10: one pass of 32 pads all to 30 (960 tokens); two
    # passes cost 120 + 280 padded tokens and one fixed part more
    counts = [30] * 4 + [10] * 28
    random.Random(0).shuffle(counts)
    passes = PassPolicy(max_tokens=4096, max_texts=32).plan(counts, truncate_at=256,
                                                             overhead_tokens=8)
    assert sorted(len(p) for p in passes) == [4, 28]
    assert {counts[i] for i in passes[0]} == {30}  # longest first


def test_a_large_fixed_part_keeps_the_texts_together():
    counts = [30] * 4 + [10] * 28
    passes = PassPolicy(max_tokens=4096, max_texts=32).plan(counts, truncate_at=256,
                                                             overhead_tokens=1000)
    assert [len(p) for p in passes] == [32]


@pytest.mark.parametrize("seed", range(40))
def test_the_plan_is_the_cheapest_cut_and_keeps_every_text_once(seed):
    rng = random.Random(seed)
    counts = [rng.choice([3, 8, 9, 12, 15, 40, 300]) for _ in range(rng.randint(1, 11))]
    policy = PassPolicy(max_tokens=rng.choice([64, 200, 4096]), max_texts=rng.randint(1, 6))
    overhead = rng.choice([0.5, 4.0, 8.0, 50.0])
    passes = policy.plan(counts, truncate_at=256, overhead_tokens=overhead)
    assert sorted(i for p in passes for i in p) == list(range(len(counts)))
    for p in passes:
        assert len(p) <= policy.max_texts
        assert len(p) == 1 or len(p) * min(max(counts[i] for i in p), 256) <= policy.max_tokens
    capped = [min(c, 256) for c in counts]
    assert _cost(passes, counts, overhead, 256) == pytest.approx(
        _best_contiguous(capped, policy, overhead))


def test_the_fit_finds_the_fixed_part_of_a_pass():
    cost = PassCost()
    for padded in [40, 80, 160, 320, 640] * 4:  # 1.6 ms + 0.22 ms per padded token
        cost.observe(padded, 0.0016 + 0.00022 * padded)
    assert cost.overhead_tokens == pytest.approx(0.0016 / 0.00022, rel=1e-6)
    assert cost.seconds(100) == pytest.approx(0.0016 + 0.022, rel=1e-6)


def test_the_prior_stands_in_until_the_passes_differ_enough():
    cost = PassCost()
    assert cost.seconds(100) == 0.0  # nothing seen: no estimate, nothing is dropped for it
    for _ in range(20):
        cost.observe(320, 0.07)  # one size only: fixed and per-token parts cannot be told apart
    assert cost.overhead_tokens == PRIOR_TOKENS
    assert cost.seconds(320) == pytest.approx(0.07)


def test_noise_that_makes_the_fit_absurd_is_bounded():
    cost = PassCost()
    for padded in [40, 80, 160, 320] * 4:
        cost.observe(padded, 0.05)  # time does not grow with size: a fit per token of 0
    assert cost.overhead_tokens == PRIOR_TOKENS
    for padded in [40, 80, 160, 320] * 20:
        cost.observe(padded, 0.5 + 1e-7 * padded)  # a huge fixed part
    assert cost.overhead_tokens == 256.0
