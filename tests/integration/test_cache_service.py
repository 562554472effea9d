"""The worker's request handling with the cache: encode only misses, flag each item, write back."""

from __future__ import annotations

import os

import numpy as np
import pytest
import redis

from embedq.config.registry import load_registry
from embedq.config.settings import Settings
from embedq.tasks.cache_codec import ModelInfo
from embedq.tasks.names import cache_key, cache_pattern, model_info_key
from embedq.tasks.schema import EmbedRequest
from embedq.worker.cache_tiered import process_cache
from embedq.worker.loaded_models import LoadedModels
from embedq.worker.service import EmbedService
from tests.support import HASHING_MODEL, write_config


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two hashing models that differ only in name and seed."""
    other = {**HASHING_MODEL, "source": {"kind": "hashing", "seed": 7}}
    return write_config(tmp_path_factory.mktemp("two-models"),
                        {"hash-a": HASHING_MODEL, "hash-b": other},
                        {"a": {"model": "hash-a"}, "b": {"model": "hash-b"}}, default="a")


@pytest.fixture
def service_factory(service_maker, two_models):
    return lambda **overrides: service_maker(two_models, **overrides)


def _request(texts: list[str], model: str = "hash-a", **fields: object) -> EmbedRequest:
    base = {"route": "a", "precision": "fp32", "dim": 64, "normalize": True,
            "output_dtype": "float32"}
    return EmbedRequest(texts=texts, model=model, **{**base, **fields})  # type: ignore[arg-type]


def test_second_request_is_served_from_memory_then_redis(service_factory):
    first = service_factory()
    cold = first.handle([_request(["alpha beta", "gamma"])]).outcomes[0]
    assert cold.cached == [False, False]
    warm = first.handle([_request(["gamma", "alpha beta", "delta"])]).outcomes[0]
    assert warm.cached == [True, True, False]
    np.testing.assert_allclose(warm.vectors[:2], cold.vectors[::-1], atol=1e-3)  # float16 store
    assert warm.tokens[:2] == cold.tokens[::-1]
    memory = first.cache().stats()["memory"]
    assert memory.hits == 2
    other_process = service_factory()  # empty memory tier, same Redis
    again = other_process.handle([_request(["alpha beta"])]).outcomes[0]
    assert again.cached == [True]
    assert other_process.cache().stats()["redis"].hits == 1


def test_hits_are_unit_vectors_again(service_factory):
    service = service_factory()
    service.handle([_request(["norm check"])])
    hit = service.handle([_request(["norm check"])]).outcomes[0]
    assert hit.cached == [True]
    np.testing.assert_allclose(np.linalg.norm(hit.vectors, axis=1), 1.0, rtol=1e-6)


def test_a_batch_of_requests_looks_up_once_and_dedupes_across_them(service_factory):
    service = service_factory()
    service.handle([_request(["shared"])])
    calls = []
    original = service.cache().shared.get_many
    service.cache().shared.get_many = lambda keys, dims: calls.append(keys) or original(keys, dims)
    out = service.handle([_request(["shared", "new one"]), _request(["new one", "x", ""]),
                          _request(["shared"], dim=32, output_dtype="float16")]).outcomes
    assert len(calls) == 1  # one Redis round trip for the whole batch
    assert out[0].cached == [True, False]
    assert out[1].cached == [False, False, False]  # "" is a bad item, never cached
    assert out[1].errors == [(2, "is empty or only whitespace")]
    assert out[2].cached == [False]  # another dim and dtype: another vector space
    assert out[2].vectors.dtype == np.float16


def test_two_models_never_share_an_entry(service_factory, redis_server):
    service = service_factory()
    a, b = service.handle([_request(["same text"]),
                           _request(["same text"], model="hash-b")]).outcomes
    assert not np.allclose(a.vectors, b.vectors)
    with redis.Redis.from_url(redis_server.url) as client:
        assert len(list(client.scan_iter(match=cache_pattern("hash-a")))) == 1
        assert len(list(client.scan_iter(match=cache_pattern("hash-b")))) == 1
    again_b = service.handle([_request(["same text"], model="hash-b")]).outcomes[0]
    assert again_b.cached == [True]
    np.testing.assert_allclose(again_b.vectors, b.vectors, atol=1e-3)


def test_a_corrupt_value_is_recomputed_and_overwritten(service_factory, redis_server):
    writer = service_factory()
    good = writer.handle([_request(["will rot"])]).outcomes[0]
    info = ModelInfo(good.revision, 32, "fp32")
    key = cache_key("hash-a", info.space(_request([])), "will rot")
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.exists(key)
        client.set(key, b"\x01 not a vector")
        reader = service_factory(cache_memory_bytes=0)
        result = reader.handle([_request(["will rot"])]).outcomes[0]
        assert result.cached == [False]
        np.testing.assert_allclose(result.vectors, good.vectors, rtol=1e-6)
        assert reader.cache().stats()["redis"].corrupt == 1
        assert client.get(key) != b"\x01 not a vector"  # overwritten by the recomputed vector
    healed = service_factory(cache_memory_bytes=0).handle([_request(["will rot"])]).outcomes[0]
    assert healed.cached == [True]


def test_worker_publishes_model_facts_for_producers(service_factory, redis_server):
    service_factory().handle([_request(["publish"])])
    with redis.Redis.from_url(redis_server.url) as client:
        info = ModelInfo.decode(client.get(model_info_key("hash-a", "fp32")))
    assert info == ModelInfo("hashing-v1-seed0", 32, "fp32")


def test_disabled_cache_computes_everything(redis_server, two_models):
    settings = Settings(redis_url=redis_server.url, config_dir=two_models, cache_enabled=False)
    registry = load_registry(two_models)
    service = EmbedService(registry, settings, LoadedModels(registry, settings),
                           process_cache(settings))
    assert service.cache() is None
    for _ in range(2):
        assert service.handle([_request(["no cache"])]).outcomes[0].cached == [False]


def test_each_process_builds_its_own_cache(redis_server):
    accessor = process_cache(Settings(redis_url=redis_server.url))
    cache = accessor()
    try:
        assert accessor() is cache
        child = os.fork()
        if child == 0:  # the child must not reuse the parent's connection or memory tier
            os._exit(0 if accessor() is not cache else 1)
        assert os.waitpid(child, 0)[1] == 0
    finally:
        cache.close()
