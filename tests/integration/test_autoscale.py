"""`embedq autoscale` with real worker processes: a backlog grows a pool, idleness takes it to
zero, and the first request brings it back and is answered.

The model is the hashing model with a 100 ms forward pass of at most 8 texts (80 texts/s per
process), so a backlog of 1,200 texts outlasts a 1 s drain target on one process.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import redis
from structlog.testing import capture_logs

from embedq.config.settings import Settings
from embedq.ops.autoscale.policy import Policy
from embedq.ops.autoscale.runner import Autoscaler
from embedq.tasks.liveness import live_consumers
from embedq.tasks.names import bulk_queue
from embedq.tasks.queue_texts import texts_waiting
from tests.support import (
    HASHING_MODEL,
    expected_hashing,
    make_client,
    wait_until,
    worker_env,
    write_config,
)

QUEUE = "embed.slow.fp32"
POLICY = Policy(cores=2, target_drain_s=1.0, settle_s=1.0, shrink_after_s=2.0, idle_to_zero_s=4.0)


@pytest.fixture
def config(tmp_path):
    slow = {**HASHING_MODEL, "source": {"kind": "hashing", "delay_ms": 100}}
    return write_config(tmp_path / "config", {"slow": slow}, {"r": {"model": "slow"}},
                        default="r")


def _probe(env: dict[str, str]) -> int:
    return subprocess.run([sys.executable, "-m", "embedq.cli", "probe", "--queue", QUEUE],
                          env=env, capture_output=True, check=False).returncode


def test_a_pool_grows_idles_to_zero_and_comes_back(redis_server, config):
    env = worker_env(redis_server.url, config, EMBEDQ_MAX_BATCH_SIZE="8",
                     EMBEDQ_BATCH_TEXTS="8")
    settings = Settings(redis_url=redis_server.url, config_dir=config)
    broker = redis.Redis.from_url(redis_server.url)
    stopping = threading.Event()
    largest = [0]
    with capture_logs() as logs:
        scaler = Autoscaler(settings, [QUEUE], POLICY, env, initial=1)
        pool = scaler.pools[QUEUE]
        runner = threading.Thread(target=scaler.run, args=(stopping.is_set,), daemon=True)
        runner.start()
        client = make_client(redis_server.url, config, timeout_s=120)
        try:
            def size_is(n: int) -> bool:
                largest[0] = max(largest[0], pool.size)
                return pool.size == n and live_consumers(broker, [QUEUE])[0] == n

            wait_until(lambda: size_is(1), timeout=60)
            assert _probe(env) == 0  # `embedq probe`: this host's worker has its model loaded
            texts = [f"backlog text {i}" for i in range(1200)]
            job = client.submit(texts, "r")
            wait_until(lambda: size_is(2), timeout=60)  # the backlog grew the pool
            got = job.get(timeout=120)
            np.testing.assert_allclose(got, expected_hashing(config, texts, model="slow"),
                                       rtol=1e-6)
            wait_until(lambda: size_is(0), timeout=60)  # idle: no process, no model loaded
            assert _probe(env) == 1
            one = client.embed(["the first request after idling"], "r", timeout=60)
            np.testing.assert_allclose(
                one, expected_hashing(config, ["the first request after idling"],
                                      model="slow"), rtol=1e-6)
            assert pool.size == 1
        finally:
            client.close()
            stopping.set()
            runner.join(timeout=90)
    assert not runner.is_alive()
    assert pool.size == 0
    assert largest[0] <= POLICY.cores
    changes = [(e["size_from"], e["size_to"]) for e in logs if e["event"] == "autoscale_decision"]
    # Grown by the backlog, down to zero (through one warm process, or at once when a slow
    # tick on a loaded machine saw both idle thresholds passed), back to one by the request.
    assert (1, 2) in changes, changes
    assert any(to == 0 for _, to in changes), changes
    assert (0, 1) in changes, changes
    assert any("texts waiting" in e["reason"] for e in logs
               if e["event"] == "autoscale_decision" and e["size_to"] == 2)


def test_a_queue_whose_worker_cannot_start_backs_off(redis_server, tmp_path):
    broken = {**HASHING_MODEL, "source": {"kind": "package", "package": "no_such_model_pkg",
                                          "distribution": "no-such-model-pkg"}}
    config = write_config(tmp_path / "broken", {"gone": broken}, {"r": {"model": "gone"}},
                          default="r")
    env = worker_env(redis_server.url, config)
    settings = Settings(redis_url=redis_server.url, config_dir=config)
    with capture_logs() as logs:
        scaler = Autoscaler(settings, ["embed.gone.fp32"], POLICY, env, initial=1)
        pool = scaler.pools["embed.gone.fp32"]
        try:
            wait_until(lambda: pool.running[0].process.poll() is not None, timeout=60)
            scaler.tick()  # sees the exit: backs off
            client = make_client(redis_server.url, config)
            client.submit(["waiting"], "r")
            broker = redis.Redis.from_url(redis_server.url)
            wait_until(lambda: texts_waiting(broker, ["embed.gone.fp32"]) == [1], timeout=10)
            for _ in range(3):
                scaler.tick()  # texts wait, but no new worker within the back-off
            assert pool.size == 0
            client.close()
        finally:
            scaler.stop()
    assert [e["wait_s"] for e in logs if e["event"] == "autoscale_backoff"] == [2.0]


def test_work_on_a_quiet_queue_brings_the_next_tick_forward(redis_server, config):
    """Between half-second ticks the runner looks at the queues that had nothing waiting: a
    burst there (interactive or bulk) is seen within `QUICK_LOOK_S`, not at the next tick."""
    settings = Settings(redis_url=redis_server.url, config_dir=config)
    broker = redis.Redis.from_url(redis_server.url)
    scaler = Autoscaler(settings, [QUEUE], POLICY, worker_env(redis_server.url, config))
    try:
        scaler.tick()
        assert scaler.quiet == {QUEUE}
        assert not scaler.work_arrived()
        for name in (QUEUE, bulk_queue(QUEUE)):
            broker.lpush(name, b"a message")
            assert scaler.work_arrived()
            broker.delete(name)
    finally:
        scaler.stop()
