"""The cache end to end: real worker processes, producer read-through, an outage, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from embedq.config.registry import load_registry
from embedq.config.settings import Settings
from embedq.ops.redis_server import RedisServer
from embedq.producer import EmbeddingClient
from embedq.tasks.names import cache_key
from tests.support import HASHING_MODEL, WorkerProcess, wait_until, worker_env, write_config


def _client(broker: str, config, *, read_through: bool, **overrides: object) -> EmbeddingClient:
    settings = Settings(redis_url=broker, config_dir=config,  # type: ignore[arg-type]
                        cache_model_info_ttl_s=0, **overrides)
    return EmbeddingClient(settings, load_registry(config), read_through=read_through)


@pytest.fixture(scope="module")
def clients(redis_server, start_worker, hashing_config) -> Iterator[dict[str, EmbeddingClient]]:
    start_worker("hashing", "fp32", hashing_config, "-c", "1")
    made = {"through": _client(redis_server.url, hashing_config, read_through=True),
            "plain": _client(redis_server.url, hashing_config, read_through=False)}
    made["plain"].embed(["warm the worker up"], "fast", timeout=60)  # barrier: worker is ready
    yield made
    for client in made.values():
        client.close()


def test_read_through_answers_hits_without_enqueueing(clients):
    first = clients["through"].submit(["rt one", "rt two", "rt one"], "fast")
    cold = first.get_detailed(timeout=60)
    assert first.messages == 1  # one message, and "rt one" travels once
    assert cold.cached == [False, False, False]
    np.testing.assert_array_equal(cold.vectors[0], cold.vectors[2])
    again = clients["through"].submit(["rt two", "rt one"], "fast")
    warm = again.get_detailed(timeout=1)
    assert again.messages == 0  # all answered by one MGET, nothing on the queue
    assert warm.cached == [True, True]
    assert warm.revision == ["hashing-v1-seed0"] * 2
    np.testing.assert_allclose(warm.vectors, cold.vectors[[1, 0]], atol=1e-3)


@pytest.mark.parametrize(("use_case", "dtype", "width"), [("small", np.int8, 48),
                                                          ("bits", np.uint8, 8)])
def test_integer_vectors_are_read_through_exactly(clients, redis_server, tmp_path, use_case,
                                                  dtype, width):
    config = write_config(tmp_path, {"hashing": HASHING_MODEL}, {  # served by the same worker
        "small": {"model": "hashing", "dim": 48, "output_dtype": "int8"},
        "bits": {"model": "hashing", "output_dtype": "binary"},
    }, default="small")
    client = _client(redis_server.url, config, read_through=True)
    texts = [f"{use_case} one", f"{use_case} two"]
    cold = client.embed_detailed(texts, use_case, timeout=60)
    assert cold.vectors.dtype == dtype
    assert cold.vectors.shape == (2, width)
    again = client.submit(texts, use_case)
    np.testing.assert_array_equal(again.get(timeout=1), cold.vectors)
    assert again.messages == 0  # answered by the producer's MGET
    client.close()


def test_hits_and_misses_merge_in_input_order(clients):
    clients["through"].embed(["mix a", "mix c"], "fast", timeout=60)
    job = clients["through"].submit(["mix a", "mix b", "mix c", "mix b"], "fast")
    merged = job.get_detailed(timeout=60)
    assert job.messages == 1
    assert merged.cached == [True, False, True, False]
    reference = clients["plain"].embed_detailed(["mix a", "mix b", "mix c"], "fast", timeout=60)
    assert reference.cached == [True, True, True]  # the worker's own tiers had them all
    np.testing.assert_allclose(merged.vectors, reference.vectors[[0, 1, 2, 1]], atol=1e-3)


def test_read_through_follows_the_route_dtype(clients):
    clients["through"].embed(["half text"], "half", timeout=60)
    job = clients["through"].submit(["half text"], "half")
    vectors = job.get(timeout=1)
    assert job.messages == 0
    assert (vectors.dtype, vectors.shape) == (np.float16, (1, 32))


def test_cache_cli_stats_and_clear_one_model(clients, redis_server, hashing_config):
    clients["plain"].embed(["cli text"], "fast", timeout=60)
    env = worker_env(redis_server.url, hashing_config)
    other = cache_key("other-model", "0123456789abcdef", "cli text")
    with redis.Redis.from_url(redis_server.url) as client:
        client.set(other, b"x")
        run = subprocess.run([sys.executable, "-m", "embedq.cli", "cache", "stats", "--json"],
                             env=env, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        assert report["workers"] >= 1
        assert report["tiers"]["memory"]["writes"] > 0
        assert report["vectors_per_model"]["hashing"] > 0
        assert report["vectors_per_model"]["other-model"] == 1
        run = subprocess.run(
            [sys.executable, "-m", "embedq.cli", "cache", "clear", "--model", "hashing"],
            env=env, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        assert "dropped" in run.stdout
        assert client.exists(other)  # another model's entry survives
    after = clients["plain"].embed_detailed(["cli text"], "fast", timeout=60)
    assert after.cached == [True]  # the worker's memory tier still has it
    job = clients["through"].submit(["cli text"], "fast")
    job.get(timeout=60)
    assert job.messages == 1  # Redis no longer has it


def _messages(client: EmbeddingClient, text: str) -> int:
    """How many messages a one-text request took (0: the producer's read-through answered)."""
    job = client.submit([text], "fast")
    job.get(timeout=60)
    return job.messages


def test_cache_redis_outage_never_fails_a_job(hashing_config):
    with RedisServer() as broker, RedisServer() as cache_server:
        env = worker_env(broker.url, hashing_config, EMBEDQ_CACHE_URL=cache_server.url,
                         EMBEDQ_CACHE_MEMORY_BYTES="0", EMBEDQ_CACHE_BACKOFF_MAX_S="0.2")
        worker = WorkerProcess([sys.executable, "-m", "embedq.cli", "worker", "-m", "hashing",
                                "-p", "fp32", "-c", "1"], env)
        overrides = {"cache_url": cache_server.url, "cache_backoff_max_s": 0.2}
        made = {flag: _client(broker.url, hashing_config, read_through=flag, **overrides)
                for flag in (False, True)}
        plain, through = made[False], made[True]
        try:
            assert plain.embed_detailed(["one"], "fast", timeout=60).cached == [False]
            assert plain.embed_detailed(["one"], "fast", timeout=60).cached == [True]
            assert _messages(through, "one") == 0
            cache_server.stop()
            for text in ("one", "two", "three", "two"):
                for client in (plain, through):
                    result = client.embed_detailed([text], "fast", timeout=60)
                    assert result.cached == [False]  # answered, computed
            cache_server.start()  # the same port, empty: nobody is told
            wait_until(lambda: plain.embed_detailed(["four"], "fast", timeout=60).cached == [True],
                       timeout=30)
            wait_until(lambda: _messages(through, "four") == 0, timeout=30)
        finally:
            for client in made.values():
                client.close()
            log = worker.stop()
        assert log.count("cache_redis_unavailable") >= 1
        assert log.count("cache_redis_unavailable") <= 3  # once per outage, not per request
        assert "cache_redis_recovered" in log
