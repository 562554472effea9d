"""Cross-task batching and redelivery, with real worker processes and a slow hashing model.

The hashing model's ``delay_ms`` stands in for a forward pass, so a batch takes long enough to
pile requests up behind it, or to kill a process in the middle of it.
"""

from __future__ import annotations

import gc
import json
import sys

import numpy as np
import psutil
import pytest

from embedq.config import PayloadError
from embedq.ops.redis_server import RedisServer
from embedq.producer.client import release_result
from embedq.tasks import EMBED_TASK
from embedq.worker.batching import count_texts
from tests.support import HASHING_MODEL, WorkerProcess, make_client, worker_env, write_config

QUEUE = "embed.slow.fp32"


@pytest.fixture(scope="module")
def slow_config(tmp_path_factory):
    slow = {**HASHING_MODEL, "source": {"kind": "hashing", "delay_ms": 1500}}
    return write_config(tmp_path_factory.mktemp("slow-config"), {"slow": slow},
                        {"slow": {"model": "slow", "precision": "fp32"}}, default="slow")


@pytest.fixture
def stack(slow_config):
    """A Redis of the test's own and a way to start slow workers on it (no other consumers)."""
    workers: list[WorkerProcess] = []
    with RedisServer() as server:

        def start(**env: str) -> WorkerProcess:
            command = [sys.executable, "-m", "embedq.cli", "worker", "-m", "slow", "-p", "fp32",
                       "-c", "1"]
            workers.append(WorkerProcess(command, worker_env(server.url, slow_config, **env)))
            return workers[-1]

        yield server, start
        gc.collect()  # Celery's AsyncResult unsubscribes in __del__: do it while Redis is up
        for worker in workers:
            worker.stop()


@pytest.fixture
def warm(stack, slow_config):
    """One slow worker, warmed up, with a client; the worker's log line count as a mark."""
    server, start = stack
    worker = start()
    client = make_client(server.url, slow_config)
    client.embed(["warm up"], "slow", timeout=120)
    return worker, client, len(worker.lines)


def _flushes(worker, after: int) -> list[int]:
    sizes = {}
    for line in worker.lines[after:]:
        if '"embedded"' in line:
            event = json.loads(line)
            sizes[event["flush_id"]] = event["batch_texts"]
    return list(sizes.values())


def test_count_texts_of_any_message():
    assert count_texts(({"texts": ["a", "b"]},)) == 2
    assert count_texts(("garbage",)) == 1
    assert count_texts(()) == 1


def test_requests_pile_up_into_one_batch_and_a_bad_one_fails_alone(warm):
    worker, client, mark = warm
    first = client.submit(["keeps the only pool process busy"], "slow")
    worker.wait_for("batch_started", after=mark)
    jobs = [client.submit([f"single text {i}"], "slow") for i in range(12)]
    bad = client.app.send_task(EMBED_TASK, args=[{"v": 1, "texts": "nope"}], queue=QUEUE)

    first.get(timeout=60)
    vectors = [job.get(timeout=60) for job in jobs]
    assert all(v.shape == (1, 64) and np.isfinite(v).all() for v in vectors)
    with pytest.raises(PayloadError):
        bad.get(timeout=60)
    release_result(bad)
    worker.wait_for('"embedded"', after=mark)
    # The busy process made the twelve wait together: one flush, not twelve.
    assert max(_flushes(worker, mark)) == 12


def test_pool_process_killed_mid_batch_loses_nothing(warm):
    worker, client, mark = warm
    job = client.submit([f"text {i}" for i in range(10)], "slow", chunk_size=5)
    started = worker.wait_for("batch_started", after=mark)
    pid = json.loads(started)["pid"]
    assert pid in [child.pid for child in psutil.Process(worker.process.pid).children()]
    psutil.Process(pid).kill()

    vectors = job.get(timeout=90)  # redelivered to the replacement process and answered
    assert vectors.shape == (10, 64)
    worker.wait_for("batch_lost", after=mark)


def test_whole_worker_killed_mid_batch_is_redelivered(stack, slow_config):
    server, start = stack
    doomed = start(EMBEDQ_VISIBILITY_TIMEOUT_S="3")
    client = make_client(server.url, slow_config)
    client.embed(["warm up"], "slow", timeout=120)
    mark = len(doomed.lines)
    job = client.submit([f"text {i}" for i in range(6)], "slow", chunk_size=3)
    doomed.wait_for("batch_started", after=mark)
    doomed.kill()

    start(EMBEDQ_VISIBILITY_TIMEOUT_S="3")
    assert job.get(timeout=120).shape == (6, 64)
