"""The broker Redis shut down and restarted under load (append-only file on), and the cache
Redis down for a while: every request is answered, and answered right."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import redis

from embedq.ops.redis_server import RedisServer
from tests.chaos.conftest import report, scale, worker_command
from tests.chaos.test_kills import BULK_TEXTS, corpus, holders
from tests.support import WorkerProcess, expected_hashing, make_client, wait_until, worker_env


def _web_traffic(client, texts: list[str]) -> list[np.ndarray]:
    """Single-text requests from 8 threads, as a web server sends them."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda text: client.embed([text], timeout=300), texts))


def _count_correct(config, texts: list[str], vectors: np.ndarray) -> int:
    expected = expected_hashing(config, texts, model="slow")
    return int(np.isclose(vectors, expected, rtol=1e-6, atol=1e-7).all(axis=1).sum())


def test_broker_restarted_under_load(broker, slow_config):
    worker = WorkerProcess(worker_command("slow", "-c", "2"), worker_env(
        broker.url, slow_config, EMBEDQ_CACHE_ENABLED="false", EMBEDQ_LIVENESS_INTERVAL_S="1"))
    bulk, singles = corpus(BULK_TEXTS), [f"web request {i}" for i in range(scale(100, 300))]
    results: dict[str, object] = {}
    watch = redis.Redis.from_url(broker.url)
    with make_client(broker.url, slow_config, cache_enabled=False) as client:
        client.embed(["warm up"], timeout=120)

        def run_bulk() -> None:
            results["bulk"] = np.concatenate(list(client.embed_many(
                bulk, chunk_size=16, max_in_flight=8, timeout=300)))

        def run_singles() -> None:
            results["singles"] = np.concatenate(_web_traffic(client, singles))

        threads = [threading.Thread(target=run_bulk), threading.Thread(target=run_singles)]
        for thread in threads:
            thread.start()
        restarts = 0
        for _ in range(scale(1, 3)):
            wait_until(lambda: bool(holders(watch)), timeout=120, every=0.01)
            broker.restart()  # SIGTERM: Redis writes its append-only file, then starts again
            restarts += 1  # (the watching client reconnects by itself)
        for thread in threads:
            thread.join(timeout=600)
    correct = (_count_correct(slow_config, bulk, results["bulk"])  # type: ignore[arg-type]
               + _count_correct(slow_config, singles, results["singles"]))  # type: ignore[arg-type]
    alive = worker.process.poll() is None
    worker.stop()
    report("broker restart under load", len(bulk) + len(singles), correct, alive,
           f"{restarts} restarts with AOF")


def test_cache_redis_down_for_a_while(broker, slow_config):
    with RedisServer() as cache:
        env = worker_env(broker.url, slow_config, EMBEDQ_CACHE_URL=cache.url,
                         EMBEDQ_CACHE_BACKOFF_MAX_S="1")
        worker = WorkerProcess(worker_command("slow", "-c", "2"), env)
        texts = [f"cached or not {i % 150}" for i in range(scale(600, 2000))]
        with make_client(broker.url, slow_config, cache_url=cache.url,
                         cache_backoff_max_s=1.0) as client:
            client.embed(["warm up"], timeout=120)
            out: dict[str, np.ndarray] = {}
            run = threading.Thread(target=lambda: out.setdefault(
                "v", np.concatenate(_web_traffic(client, texts))))
            run.start()
            cache.stop()
            down_for = scale(3, 30)
            run.join(timeout=down_for)  # the outage lasts this long, or as long as the run
            cache.start()
            run.join(timeout=600)
            started = time.monotonic()
            wait_until(lambda: client.embed_detailed(["cached or not 7"], timeout=60).cached
                       == [True], timeout=60)  # the cache is back without a restart
            recovered = time.monotonic() - started
        expected = expected_hashing(slow_config, texts, model="slow")
        correct = int(np.isclose(out["v"], expected, atol=2e-3).all(axis=1).sum())
        alive = worker.process.poll() is None
        worker.stop()
    report("cache Redis down", len(texts), correct, alive,
           f"down {down_for}s; cache hits again {recovered:.1f}s after it came back")
