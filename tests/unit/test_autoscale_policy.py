"""The autoscaler's decisions as pure functions of what it observed (a fake clock is fine)."""

from __future__ import annotations

from dataclasses import replace

from embedq.ops.autoscale.policy import Observation, Policy, PoolMemory, decide
from embedq.ops.autoscale.rates import RateMeter

POLICY = Policy(cores=2, target_drain_s=10, settle_s=5, shrink_after_s=15, idle_to_zero_s=60)


def seen(queue="q", *, texts=0, age=None, unacked=0, processes=1, ready=None, rate=100.0,
         util=0.0) -> Observation:
    return Observation(queue, texts, age, unacked, processes,
                       processes if ready is None else ready, rate, util)


def sizes(now, observed, memory, policy=POLICY):
    return {d.queue: d.target for d in decide(now, observed, memory, policy)}


def test_a_backlog_grows_the_pool_to_drain_it_within_the_target():
    memory = {"q": PoolMemory()}
    assert sizes(100, [seen(texts=500, processes=1)], memory) == {"q": 1}  # 5 s: one is enough
    assert sizes(101, [seen(texts=1500, processes=1)], memory) == {"q": 2}  # 15 s: two
    assert sizes(102, [seen(texts=9000, processes=2)], memory) == {"q": 2}  # never past cores


def test_an_old_message_grows_a_pool_that_the_rate_says_is_big_enough():
    memory = {"q": PoolMemory()}
    assert sizes(100, [seen(texts=50, age=30.0, processes=1)], memory) == {"q": 2}
    # Not while a process is still starting (its model loading), nor right after a change.
    memory = {"q": PoolMemory(last_change_at=-100)}
    assert sizes(100, [seen(texts=50, age=30.0, processes=1, ready=0)], memory) == {"q": 1}
    memory = {"q": PoolMemory(last_change_at=98)}
    assert sizes(100, [seen(texts=50, age=30.0, processes=1)], memory) == {"q": 1}


def test_idle_keeps_one_warm_then_scales_to_zero_and_work_brings_it_back():
    memory = {"q": PoolMemory(last_work_at=0)}
    assert sizes(5, [seen(processes=2)], memory) == {"q": 2}
    assert sizes(20, [seen(processes=2)], memory) == {"q": 1}
    assert sizes(59, [seen(processes=1)], memory) == {"q": 1}
    assert sizes(61, [seen(processes=1)], memory) == {"q": 0}
    assert sizes(62, [seen(processes=0)], memory) == {"q": 0}
    assert sizes(63, [seen(texts=1, processes=0)], memory) == {"q": 1}
    assert memory["q"].last_work_at == 63
    # A message claimed but not answered is work too: no shrink under it.
    assert sizes(200, [seen(unacked=1, processes=1)], memory) == {"q": 1}


def test_a_kept_queue_never_goes_to_zero():
    memory = {"q": PoolMemory(min_size=1, last_work_at=0)}
    assert sizes(1000, [seen(processes=1)], memory) == {"q": 1}


def test_a_shrink_under_work_is_one_process_at_a_time_and_settles():
    memory = {"q": PoolMemory(last_change_at=0)}
    policy = replace(POLICY, cores=4)
    assert sizes(10, [seen(texts=100, processes=4)], memory, policy) == {"q": 3}
    assert sizes(12, [seen(texts=100, processes=3)], memory, policy) == {"q": 3}
    assert sizes(16, [seen(texts=100, processes=3)], memory, policy) == {"q": 2}


def test_busy_pools_share_the_cores_and_none_starves():
    memory = {"etl": PoolMemory(), "clustering": PoolMemory(), "search": PoolMemory()}
    observed = [seen("etl", texts=20000, processes=2, rate=150, util=1.0),
                seen("clustering", texts=3000, processes=0, rate=15),
                seen("search", texts=1, processes=1, util=0.05)]
    # search keeps up (a few % of a core: charged nothing); etl gives a core to clustering.
    assert sizes(100, observed, memory) == {"etl": 1, "clustering": 1, "search": 1}
    # Alone, etl takes every core.
    memory = {"etl": PoolMemory()}
    assert sizes(100, [seen("etl", texts=20000, processes=1, rate=150)], memory) == {"etl": 2}


def test_a_busy_light_pool_is_charged_what_it_uses():
    memory = {"etl": PoolMemory(), "search": PoolMemory()}
    policy = replace(POLICY, cores=3)
    observed = [seen("etl", texts=20000, processes=1, rate=150, util=1.0),
                seen("search", texts=1, processes=1, util=0.8)]
    assert sizes(100, observed, memory, policy) == {"etl": 2, "search": 1}


def test_the_decision_says_why():
    memory = {"q": PoolMemory()}
    (decision,) = decide(100, [seen(texts=9000, processes=1)], memory, POLICY)
    assert "9000 texts waiting" in decision.reason
    assert "core budget (2) allows 2" in decision.reason
    assert (decision.current, decision.target) == (1, 2)


def test_the_rate_is_learnt_only_while_a_backlog_drains():
    meter = RateMeter(rate_per_process=100.0)
    meter.update(0.0, {"w1": 0.0}, processes=1, backlogged=True)
    meter.update(1.0, {"w1": 300.0}, processes=1, backlogged=True)
    assert 100 < meter.rate_per_process < 300
    assert meter.utilisation == 1.0
    learnt = meter.rate_per_process
    meter.update(2.0, {"w1": 310.0}, processes=1, backlogged=False)  # keeping up: no change
    assert meter.rate_per_process == learnt
    assert 0 < meter.utilisation < 0.2
    meter.update(3.0, {"w2": 5.0}, processes=1, backlogged=False)  # a new worker's counter
    assert meter.utilisation > 0


def test_texts_waiting_at_a_busy_pool_grow_it_however_short_the_list():
    # An embed_many window: 512 texts waiting drain in 3.4 s, but the process never rests.
    memory = {"q": PoolMemory()}
    observed = [seen(texts=512, processes=1, rate=150, util=0.95)]
    (decision,) = decide(100, observed, memory, POLICY)
    assert decision.target == 2
    assert "95% busy" in decision.reason
    # The same list at a pool with slack: no growth.
    memory = {"q": PoolMemory()}
    assert sizes(100, [seen(texts=512, processes=1, rate=150, util=0.3)], memory) == {"q": 1}


def test_a_busy_pool_with_work_does_not_shrink():
    memory = {"q": PoolMemory(last_change_at=0)}
    assert sizes(100, [seen(texts=100, processes=2, util=0.8)], memory) == {"q": 2}
    assert sizes(100, [seen(texts=100, processes=2, util=0.2)], memory) == {"q": 1}


def test_the_counters_are_read_every_few_seconds_and_a_pause_in_the_backlog_is_not_learnt():
    meter = RateMeter(rate_per_process=100.0, every_s=2.0)
    assert meter.due(0.0)  # the first reading at once
    meter.update(0.0, {"w1": 0.0}, processes=1, backlogged=True)
    assert not meter.due(1.0)
    assert meter.due(2.0)
    # Texts waited at both readings, but not at a look between: the worker may have idled.
    meter.saw(True)
    meter.saw(False)
    meter.update(2.0, {"w1": 800.0}, processes=1, backlogged=True)
    assert meter.rate_per_process == 100.0
    assert meter.utilisation == 1.0
    # Waiting at every look: learnt.
    meter.saw(True)
    meter.update(4.0, {"w1": 1600.0}, processes=1, backlogged=True)
    assert meter.rate_per_process > 100.0
