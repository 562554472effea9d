"""Scoped gateway keys against a real `embedq gateway` process and a real hashing worker: a key
scoped to one use case gets 403 on another, a key over its rate gets 429 with ``Retry-After``,
a rotated key file takes effect within seconds, and no key is ever in the log or the metrics."""

from __future__ import annotations

import os
import time

import httpx
import openai
import pytest

from embedq.gateway.keyfile import fingerprint
from tests.support import HASHING_MODEL, wait_for_consumers, wait_until, write_config

OPEN, SCOPED, METERED, ROTATED = ("sk-open-0d1e2f3a4b", "sk-search-9c8b7a6f5e",
                                  "sk-metered-1a2b3c4d5e", "sk-rotated-77aa88bb99")


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("keys-config"), {"hashing": HASHING_MODEL},
                        {"search": {"model": "hashing"}, "etl": {"model": "hashing"}},
                        default="search")


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "gateway-keys"
    path.write_text(f"# ops\n{OPEN}\n{SCOPED} use_cases=search\n"
                    f"{METERED} use_cases=search,etl rate=0.2 burst=3\n")
    return path


@pytest.fixture(scope="module")
def gateway(redis_server, start_worker, start_gateway, config, key_file):
    start_worker("hashing", "fp32", config, "-c", "1")
    wait_for_consumers(redis_server.url, "embed.hashing.fp32")
    return start_gateway(config, EMBEDQ_GATEWAY_API_KEYS_FILE=str(key_file))


def _sdk(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway[1]}/v1", api_key=key, max_retries=0)


def test_a_plain_key_may_use_every_use_case(gateway):
    with _sdk(gateway, OPEN) as sdk:
        for use_case in ("search", "etl"):
            assert len(sdk.embeddings.create(model=use_case, input=["a", "b"]).data) == 2


def test_a_key_scoped_to_search_gets_403_on_etl(gateway):
    with _sdk(gateway, SCOPED) as sdk:
        assert len(sdk.embeddings.create(model="search", input="hello").data) == 1
        with pytest.raises(openai.PermissionDeniedError) as caught:
            sdk.embeddings.create(model="etl", input="hello")
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "use_case_not_allowed"
    assert error["param"] == "model"
    assert fingerprint(SCOPED) in error["message"]
    assert "search" in error["message"]


def test_a_key_over_its_rate_gets_429_with_retry_after(gateway):
    with _sdk(gateway, METERED) as sdk:
        sdk.embeddings.create(model="search", input=["one", "two", "three"])  # the burst
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.embeddings.create(model="etl", input=["four", "five"])
    # 2 texts at 0.2 a second: about 10 s (less if the machine was slow between the calls).
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 10
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "rate_limit_exceeded"
    assert "over its rate of 0.2 texts per second" in caught.value.body["message"]


def test_a_rotated_key_file_takes_effect_within_seconds(gateway, key_file):
    replacement = key_file.with_name("gateway-keys.new")
    replacement.write_text(f"{OPEN}\n{ROTATED} use_cases=etl\n")
    os.replace(replacement, key_file)
    started = time.monotonic()

    def rotated() -> bool:
        with _sdk(gateway, ROTATED) as sdk:
            try:
                sdk.embeddings.create(model="etl", input="x")
            except openai.AuthenticationError:
                return False
            return True

    wait_until(rotated, timeout=5, every=0.2)
    assert time.monotonic() - started < 5
    with _sdk(gateway, SCOPED) as sdk, pytest.raises(openai.AuthenticationError):
        sdk.embeddings.create(model="search", input="x")  # revoked by the rotation


def test_no_key_is_in_the_log_or_the_metrics(gateway):
    process, url = gateway
    with _sdk(gateway, "sk-unknown-3e3e3e3e") as sdk, pytest.raises(openai.AuthenticationError):
        sdk.embeddings.create(model="search", input="x")
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert "embedq_gateway_requests" in metrics
    log = "".join(process.lines)
    assert "api_keys_reloaded" in log
    assert "request refused" in log
    assert fingerprint(SCOPED) in log  # the refusals say which key, by its fingerprint
    for key in (OPEN, SCOPED, METERED, ROTATED, "sk-unknown-3e3e3e3e"):
        assert key not in log
        assert key not in metrics
