"""The Redis tier and the two-tier cache against a real redis-server, outages included."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis
from structlog.testing import capture_logs

from embedq.config.settings import Settings
from embedq.ops.redis_server import RedisServer
from embedq.tasks.cache_codec import CachedVector, as_stored
from embedq.tasks.names import cache_key, cache_pattern
from embedq.worker.cache_memory import MemoryCache
from embedq.worker.cache_redis import RedisCache
from embedq.worker.cache_tiered import TieredCache
from tests.support import wait_until


def _entry(seed: int, dim: int = 64) -> CachedVector:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return as_stored(CachedVector(vector, seed, False), "float16")


@pytest.fixture
def prefix(request) -> str:
    return f"embedq:v1:vec:{request.node.name}:0123456789abcdef:"


@pytest.fixture
def opened() -> Iterator[Callable[[Any], Any]]:
    """Register clients and caches a test opens; all are closed at its end."""
    things: list[Any] = []

    def _open(thing: Any) -> Any:
        things.append(thing)
        return thing

    yield _open
    for thing in things:
        thing.close()


def _key(prefix: str, i: int) -> str:
    return f"{prefix}{i:032x}"


def _settings(url: str, **overrides: object) -> Settings:
    return Settings(redis_url=url, **overrides)  # type: ignore[arg-type]


def test_redis_tier_hits_misses_and_refreshes_ttl(redis_server, prefix, opened):
    tier = opened(RedisCache.from_settings(_settings(redis_server.url, cache_ttl_s=100)))
    keys = [_key(prefix, i) for i in range(3)]
    tier.set_many({keys[0]: _entry(0), keys[1]: _entry(1)})
    raw = opened(redis.Redis.from_url(redis_server.url))
    raw.expire(keys[0], 5)  # as if written long ago
    found = tier.get_many(keys, [64, 64, 64])
    np.testing.assert_array_equal(found[0].vector, _entry(0).vector)
    assert found[1].tokens == 1
    assert found[2] is None
    assert raw.ttl(keys[0]) > 5  # the hit refreshed it in the same round trip
    stats = tier.stats()
    assert (stats.hits, stats.misses, stats.writes) == (2, 1, 2)
    assert stats.written_bytes > 0


def test_corrupt_value_is_a_counted_logged_miss(redis_server, prefix, opened):
    tier = opened(RedisCache.from_settings(_settings(redis_server.url)))
    raw = opened(redis.Redis.from_url(redis_server.url))
    keys = [_key(prefix, i) for i in range(3)]
    raw.set(keys[0], b"\x01garbage")
    raw.hset(keys[1], "not", "a string")  # WRONGTYPE must not break the other keys
    tier.set_many({keys[2]: _entry(2)})
    with capture_logs() as logs:
        found = tier.get_many(keys, [64] * 3)
        tier.get_many(keys[:1], [64])
    assert found[:2] == [None, None]
    assert found[2] is not None
    assert tier.stats().corrupt == 3
    assert [log["event"] for log in logs] == ["cache_value_corrupt"]
    tier.set_many({keys[0]: _entry(0), keys[1]: _entry(1)})  # a miss's write overwrites it
    assert all(entry is not None for entry in tier.get_many(keys, [64] * 3))


def test_two_tiers_promote_redis_hits_into_memory(redis_server, prefix, opened):
    settings = _settings(redis_server.url)
    writer = opened(TieredCache.from_settings(settings))
    keys = [_key(prefix, i) for i in range(2)]
    writer.set_many({keys[0]: _entry(0)})
    reader = opened(TieredCache(MemoryCache(2**20), RedisCache.from_settings(settings),
                                storage_dtype="float16"))  # another process: empty memory
    assert reader.get_many(keys, [64, 64])[1] is None
    assert reader.get_many(keys[:1], [64])[0] is not None
    stats = reader.stats()
    assert (stats["memory"].hits, stats["memory"].misses) == (1, 2)
    assert (stats["redis"].hits, stats["redis"].misses) == (1, 1)  # the 2nd read stayed in memory
    assert stats["memory"].entries == 1


def test_set_many_stores_the_storage_dtype(redis_server, prefix, opened):
    settings = _settings(redis_server.url, cache_storage_dtype="float32")
    cache = opened(TieredCache.from_settings(settings))
    exact = CachedVector(np.linspace(0, 1, 64, dtype=np.float32), 3, False)
    cache.set_many({_key(prefix, 0): exact})
    fresh = opened(RedisCache.from_settings(_settings(redis_server.url)))
    np.testing.assert_array_equal(fresh.get_many([_key(prefix, 0)], [64])[0].vector, exact.vector)


@pytest.fixture
def cache_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_redis_outage_serves_misses_logs_once_and_recovers(cache_server, prefix, opened):
    settings = _settings(cache_server.url, cache_backoff_max_s=0.1)
    cache = opened(TieredCache(MemoryCache(0), RedisCache.from_settings(settings),
                               storage_dtype="float16"))
    key = _key(prefix, 0)
    cache.set_many({key: _entry(0)})
    cache_server.stop()
    with capture_logs() as logs:
        for _ in range(50):
            assert cache.get_many([key], [64]) == [None]
            cache.set_many({key: _entry(0)})
    assert [log["event"] for log in logs] == ["cache_redis_unavailable"]
    assert cache.stats()["redis"].errors >= 1
    cache_server.start()  # same port, empty
    with capture_logs() as logs:
        wait_until(lambda: cache.set_many({key: _entry(0)}) or
                   cache.get_many([key], [64])[0] is not None)
    assert "cache_redis_recovered" in [log["event"] for log in logs]


def test_a_slow_redis_is_bounded_by_the_socket_timeout(cache_server, prefix, opened):
    settings = _settings(cache_server.url, cache_socket_timeout_s=0.1)
    tier = opened(RedisCache.from_settings(settings))
    blocker = opened(redis.Redis.from_url(cache_server.url))
    blocker.set(_key(prefix, 0), b"x")
    tier.get_many([_key(prefix, 0)], [64])  # connect first, so only the reply is slow
    blocker.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    started = time.monotonic()
    assert tier.get_many([_key(prefix, 0)], [64]) == [None]
    assert time.monotonic() - started < 1.0
    assert tier.stats().errors == 1


def test_model_pattern_matches_only_that_model():
    with RedisServer() as own:  # an empty server: the total count below is exact
        _check_patterns(redis.Redis.from_url(own.url))


def _check_patterns(client: redis.Redis) -> None:
    space = "0123456789abcdef"
    models = ["a", "a:b", "a*", "b"]
    for model in models:
        client.set(cache_key(model, space, "same text"), b"x")
    try:
        for model in models:
            found = [key.decode() for key in client.scan_iter(match=cache_pattern(model))]
            assert found == [cache_key(model, space, "same text")], model
        assert len(list(client.scan_iter(match=cache_pattern()))) == len(models)
    finally:
        client.delete(*[cache_key(m, space, "same text") for m in models])
