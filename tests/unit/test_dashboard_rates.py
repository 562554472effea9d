"""Rates and quantiles follow Prometheus' rules (resets, histogram_quantile's interpolation)."""

from __future__ import annotations

import pytest

from embedq.config.errors import ConfigError
from embedq.ops.dashboard.rates import combine, difference, hit_rates, increase, quantile
from embedq.ops.dashboard.scrape import Totals, parse
from embedq.ops.dashboard.server import check_bind

INF = float("inf")


def test_a_counter_that_went_down_was_reset():
    assert increase(10, 4) == 6
    assert increase(3, 40) == 3


def test_quantile_interpolates_inside_the_bucket():
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, INF: 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.1 + 0.4 * (20 / 40))
    assert quantile(0.5, {0.1: 0.0, INF: 0.0}) is None
    assert quantile(0.99, {0.1: 0.0, INF: 5.0}) == pytest.approx(0.1)


def test_two_workers_readings_combine_per_queue():
    text = """
# TYPE embedq_texts_total counter
embedq_texts_total{queue="q",model="m",precision="fp32"} 12.0
# TYPE embedq_cache_lookups_total counter
embedq_cache_lookups_total{queue="q",model="m",precision="fp32",tier="memory",result="hit"} 3.0
embedq_cache_lookups_total{queue="q",model="m",precision="fp32",tier="memory",result="miss"} 1.0
# TYPE embedq_request_seconds histogram
embedq_request_seconds_bucket{queue="q",model="m",precision="fp32",le="0.1"} 2.0
embedq_request_seconds_bucket{queue="q",model="m",precision="fp32",le="+Inf"} 4.0
"""
    one = parse(text)["q"]
    both = combine([one, difference(one, Totals(texts=2.0))])
    assert both.texts == 22.0
    assert both.latency == {0.1: 4.0, INF: 8.0}
    assert hit_rates(both.cache) == {"memory": 0.75}


def test_the_dashboard_refuses_the_network_without_credentials():
    with pytest.raises(ConfigError, match="EMBEDQ_DASHBOARD_USER"):
        check_bind("0.0.0.0", None, None)
    check_bind("0.0.0.0", "ops", "secret")
    check_bind("127.0.0.1", None, None)
