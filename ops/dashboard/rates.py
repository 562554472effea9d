"""Rates and quantiles between two readings of cumulative figures (Prometheus' own rules).

A counter that went down was reset (a worker restarted): its new value is the increase, as in
PromQL's ``rate``. Quantiles interpolate linearly inside the histogram bucket that holds them,
as ``histogram_quantile`` does.
"""

from __future__ import annotations

from embedq.ops.dashboard.scrape import Totals


def increase(new: float, old: float) -> float:
    """How much a counter grew, a reset counted from zero."""
    return new - old if new >= old else new


def bucket_increase(new: dict[float, float], old: dict[float, float]) -> dict[float, float]:
    """Per-bucket increase of a cumulative histogram."""
    return {bound: increase(count, old.get(bound, 0.0)) for bound, count in new.items()}


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of cumulative ``le`` buckets, or None without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower  # above the last finite bucket: its bound is all we know
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def difference(new: Totals, old: Totals | None) -> Totals:
    """What happened between two readings of one worker's queue (all of ``new`` if no old)."""
    if old is None:
        return new
    return Totals(
        texts=increase(new.texts, old.texts),
        expired=increase(new.expired, old.expired),
        failed=increase(new.failed, old.failed),
        batch_texts_sum=increase(new.batch_texts_sum, old.batch_texts_sum),
        batches=increase(new.batches, old.batches),
        latency=bucket_increase(new.latency, old.latency),
        queue_wait=bucket_increase(new.queue_wait, old.queue_wait),
        cache={key: increase(value, old.cache.get(key, 0.0)) for key, value in new.cache.items()},
        memory_bytes=new.memory_bytes,
    )


def combine(parts: list[Totals]) -> Totals:
    """The sum of several workers' figures for one queue."""
    out = Totals()
    for part in parts:
        out.texts += part.texts
        out.expired += part.expired
        out.failed += part.failed
        out.batch_texts_sum += part.batch_texts_sum
        out.batches += part.batches
        out.memory_bytes += part.memory_bytes
        for target, source in ((out.latency, part.latency), (out.queue_wait, part.queue_wait)):
            for bound, count in source.items():
                target[bound] = target.get(bound, 0.0) + count
        for key, value in part.cache.items():
            out.cache[key] = out.cache.get(key, 0.0) + value
    return out


def hit_rates(cache: dict[tuple[str, str], float]) -> dict[str, float]:
    """Hit rate per cache tier (tiers without lookups left out)."""
    rates: dict[str, float] = {}
    for tier in sorted({tier for tier, _ in cache}):
        hits, misses = cache.get((tier, "hit"), 0.0), cache.get((tier, "miss"), 0.0)
        if hits + misses > 0:
            rates[tier] = hits / (hits + misses)
    return rates
