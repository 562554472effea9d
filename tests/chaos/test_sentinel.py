"""Redis Sentinel: the broker's master is killed, a sentinel promotes its replica, and the
producer, the worker and Celery follow it through a ``sentinel://`` URL with nothing lost."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import redis

from embedq.ops.processes import stop_processes
from embedq.ops.redis_server import RedisServer, find_redis_server, free_port
from tests.chaos.conftest import report, scale, worker_command
from tests.support import (
    WorkerProcess,
    expected_hashing,
    make_client,
    wait_for_consumers,
    wait_until,
    worker_env,
)

MASTER = "mymaster"


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, str]]:
    """A master, its replica and one sentinel watching them; yields the sentinel:// URL."""
    with RedisServer(persist=True) as master, RedisServer(
            args=["--replicaof", "127.0.0.1", str(master.port)]) as replica:
        port = free_port()
        conf = tmp_path / "sentinel.conf"
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                        f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 1\n"
                        f"sentinel down-after-milliseconds {MASTER} 1000\n"
                        f"sentinel failover-timeout {MASTER} 5000\n")
        sentinel = subprocess.Popen([find_redis_server(), str(conf), "--sentinel"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            watcher = redis.Redis(port=port)
            wait_until(lambda: _answers(watcher), timeout=30)
            wait_until(lambda: replica_synced(replica), timeout=30)
            yield master, replica, f"sentinel://127.0.0.1:{port}/0?master_name={MASTER}"
        finally:
            stop_processes([sentinel], grace_s=10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.sentinel_master(MASTER))
    except redis.RedisError:
        return False


def replica_synced(replica: RedisServer) -> bool:
    info = redis.Redis(port=replica.port).info("replication")
    return info.get("master_link_status") == "up"


def test_the_master_dies_and_everyone_follows_the_promoted_replica(sentinel_setup, slow_config):
    master, replica, url = sentinel_setup
    worker = WorkerProcess(worker_command("slow", "-c", "2"), worker_env(
        url, slow_config, EMBEDQ_CACHE_ENABLED="false", EMBEDQ_RESEND_AFTER_S="3",
        EMBEDQ_LIVENESS_INTERVAL_S="1"))
    texts = [f"through a failover {i}" for i in range(scale(300, 1000))]
    with make_client(url, slow_config, cache_enabled=False, resend_after_s=3.0) as client:
        wait_for_consumers(f"redis://127.0.0.1:{master.port}/0", "embed.slow.fp32", 2)
        client.embed(["before the failover"], timeout=120)
        out: dict[str, list[np.ndarray]] = {}

        def traffic() -> None:
            with ThreadPoolExecutor(8) as pool:
                out["vectors"] = list(pool.map(lambda t: client.embed([t], timeout=300), texts))

        run = threading.Thread(target=traffic)
        run.start()
        wait_until(lambda: redis.Redis(port=master.port).llen("embed.slow.fp32") > 0
                   or not run.is_alive(), timeout=60, every=0.01)
        master.kill()  # a crash, not a shutdown
        wait_until(lambda: redis.Redis(port=replica.port).info("replication")["role"] == "master",
                   timeout=60)
        run.join(timeout=600)
    expected = expected_hashing(slow_config, texts, model="slow")
    correct = int(np.isclose(np.concatenate(out["vectors"]), expected,
                             atol=1e-7).all(axis=1).sum())
    alive = worker.process.poll() is None
    worker.stop()
    report("sentinel failover (master kill -9)", len(texts), correct, alive,
           "replica promoted; producer, worker and Celery followed")
