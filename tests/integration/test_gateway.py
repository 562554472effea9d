"""The gateway as users meet it: a real `embedq gateway` process, a real worker (hashing model),
the official `openai` client and LangChain's `OpenAIEmbeddings` pointed at it with ``base_url``,
and raw HTTP for what no SDK would send (invalid UTF-8, chunked oversize bodies, no key).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import openai
import pytest
import redis
from langchain_openai import OpenAIEmbeddings

from embedq.gateway.app import CLIENT_TIMEOUT_HEADER
from embedq.ops.redis_server import free_port
from embedq.tasks.names import backlog_key, cancel_key, live_key, rate_key
from embedq.tasks.wire import open_envelope
from tests.support import (
    HASHING_MODEL,
    make_client,
    wait_for_consumers,
    wait_until,
    worker_env,
    write_config,
)

LIMITS = {"EMBEDQ_GATEWAY_MAX_BODY_BYTES": "4096", "EMBEDQ_GATEWAY_MAX_INPUTS": "4",
          "EMBEDQ_GATEWAY_TIMEOUT_S": "3"}
KEYS = {"EMBEDQ_GATEWAY_API_KEYS": "k-one,k-two"}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """``fast`` and ``bits`` have a worker; ``cold``, ``deep``, ``stalled`` and ``left`` never
    get one (``stalled``'s is frozen), so what reaches their queues stays there to be counted."""
    model = {**HASHING_MODEL, "matryoshka_dims": [32, 16]}
    return write_config(
        tmp_path_factory.mktemp("gateway-config"),
        {"hashing": model, "cold": HASHING_MODEL, "deep": HASHING_MODEL,
         "stalled": HASHING_MODEL, "left": HASHING_MODEL},
        {"fast": {"model": "hashing", "description": "tests"},
         "bits": {"model": "hashing", "output_dtype": "binary"},
         "cold": {"model": "cold"}, "deep": {"model": "deep"}, "stalled": {"model": "stalled"},
         "left": {"model": "left"}},
        default="fast",
    )


@pytest.fixture(scope="module")
def served(redis_server, start_worker, start_gateway, config):
    """The module's gateway process (for its log) and its URL, once a worker is ready."""
    start_worker("hashing", "fp32", config, "-c", "1")
    wait_for_consumers(redis_server.url, "embed.hashing.fp32")
    return start_gateway(config, **LIMITS)


@pytest.fixture(scope="module")
def url(served):
    return served[1]


@pytest.fixture(scope="module")
def direct(redis_server, config):
    client = make_client(redis_server.url, config)
    yield client
    client.close()


@pytest.fixture
def sdk(url):
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def _post(url: str, body: bytes, headers: dict[str, str] | None = None, *,
          chunked: bool = False, path: str = "/v1/embeddings") -> tuple[int, dict, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        if chunked:
            connection.request("POST", path, body=iter([body]), headers=headers or {},
                               encode_chunked=True)
        else:
            connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def _get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_openai_client_gets_the_producers_vectors(sdk, direct):
    texts = ["red running shoes", "a quiet lake at dawn", "red running shoes"]
    expected = direct.embed_detailed(texts, "fast", timeout=30)
    floats = sdk.embeddings.create(model="fast", input=texts, encoding_format="float")
    assert [item.index for item in floats.data] == [0, 1, 2]
    np.testing.assert_allclose([item.embedding for item in floats.data], expected.vectors,
                               rtol=1e-6)
    assert floats.model == "fast"
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == sum(expected.tokens) > 0
    default = sdk.embeddings.create(model="fast", input="a quiet lake at dawn")  # SDK: base64
    np.testing.assert_allclose(default.data[0].embedding, expected.vectors[1], rtol=1e-6)


def test_dimensions_are_matryoshka_sizes_the_model_offers(sdk, direct):
    short = sdk.embeddings.create(model="fast", input=["some text"], dimensions=16)
    expected = direct.embed(["some text"], "fast", dim=16, timeout=30)
    np.testing.assert_allclose(short.data[0].embedding, expected[0], rtol=1e-6)
    with pytest.raises(openai.BadRequestError, match="choose one of 64, 32, 16") as caught:
        sdk.embeddings.create(model="fast", input="x", dimensions=20)
    assert caught.value.param == "dimensions"


def test_binary_routes_answer_plus_minus_one_floats(sdk):
    vector = sdk.embeddings.create(model="bits", input="some text").data[0].embedding
    assert len(vector) == 64
    assert set(vector) <= {-1.0, 1.0}


def test_models_are_the_use_cases(sdk):
    assert [model.id for model in sdk.models.list()] == ["fast", "bits", "cold", "deep",
                                                          "stalled", "left"]
    assert sdk.models.retrieve("fast").owned_by == "embedq"
    with pytest.raises(openai.NotFoundError, match="not an embedq use case"):
        sdk.models.retrieve("text-embedding-3-small")


@pytest.mark.parametrize(("arguments", "kind", "param", "message"), [
    ({"input": ["ok", " "]}, openai.BadRequestError, "input[1]", r"input\[1\] is empty"),
    ({"input": []}, openai.BadRequestError, "input", "empty list"),
    ({"input": [[1, 2, 3]]}, openai.BadRequestError, "input", "token ids"),
    ({"input": "x", "extra_body": {"temperature": 0}}, openai.BadRequestError, "temperature",
     "unknown field"),
    ({"input": ["a"] * 5}, openai.APIStatusError, "input", "EMBEDQ_GATEWAY_MAX_INPUTS"),
    ({"input": "x", "model": "text-embedding-ada-002"}, openai.NotFoundError, "model",
     "known: bits, cold, deep, fast, left"),
])
def test_the_sdk_raises_its_own_errors_with_our_messages(sdk, arguments, kind, param, message):
    arguments = {"model": "cold", **arguments}
    with pytest.raises(kind, match=message) as caught:
        sdk.embeddings.create(**arguments)
    assert caught.value.param == param
    if "MAX_INPUTS" in message:
        assert caught.value.status_code == 413


@pytest.mark.parametrize(("body", "headers", "chunked", "status", "message"), [
    (b'{"input": "caf\xe9", "model": "cold"}', {}, False, 400, "not valid UTF-8"),
    (b'{"input": "x", "model": "cold",}', {}, False, 400, "not valid JSON"),
    (b'"just a string"', {}, False, 400, "must be a JSON object"),
    (b'{"input": true, "model": "cold"}', {}, False, 400, "got boolean"),
    (json.dumps({"input": "x" * 5000, "model": "cold"}).encode(), {}, False, 413,
     "EMBEDQ_GATEWAY_MAX_BODY_BYTES"),
    (json.dumps({"input": "x" * 5000, "model": "cold"}).encode(), {}, True, 413,
     "EMBEDQ_GATEWAY_MAX_BODY_BYTES"),
])
def test_bad_bodies_are_refused_once_in_the_log_and_never_enqueued(
        served, redis_server, body, headers, chunked, status, message):
    gateway, url = served
    code, response_headers, answer = _post(url, body, headers, chunked=chunked)
    assert code == status
    assert set(answer) == {"error"}
    assert message in answer["error"]["message"]
    assert "Traceback" not in json.dumps(answer)
    request_id = response_headers["x-request-id"]
    wait_until(lambda: any(request_id in line for line in gateway.lines))  # the log is a pipe
    assert sum(request_id in line for line in gateway.lines) == 1
    with redis.Redis.from_url(redis_server.url) as broker:
        assert broker.llen("embed.cold.fp32") == 0


def test_unknown_paths_and_methods_answer_in_the_same_shape(url):
    status, body = _get(url, "/v1/embeddings")
    assert status == 405
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    status, body = _get(url, "/v1/chat/completions")
    assert status == 404
    assert "POST /v1/embeddings" in json.loads(body)["error"]["message"]


def test_no_live_worker_is_503_and_a_frozen_one_is_504(url, sdk, start_worker, config,
                                                          redis_server):
    with pytest.raises(openai.InternalServerError, match="no live worker") as caught:
        sdk.embeddings.create(model="cold", input="nobody serves this")
    assert caught.value.status_code == 503
    assert caught.value.response.headers["retry-after"] == "1"
    stalled = start_worker("stalled", "fp32", config, "-c", "1")
    wait_for_consumers(redis_server.url, "embed.stalled.fp32")
    _signal_tree(stalled.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(openai.InternalServerError, match="busy or slow") as caught:
            sdk.embeddings.create(model="stalled", input="the worker is frozen")
        assert caught.value.status_code == 504
        # A client that says it waits less (the OpenAI SDKs' read-timeout header) gets its own
        # deadline, not the gateway's 3 s, and the message carries it to the workers.
        started = time.time()
        status, _, _ = _post(url, json.dumps({"model": "stalled", "input": "hurry"}).encode(),
                             {CLIENT_TIMEOUT_HEADER: "0.5"})
        assert status == 504
        assert time.time() - started < 2.0
        with redis.Redis.from_url(redis_server.url) as broker:
            deadlines = [open_envelope(raw).deadline for raw in broker.lrange(
                "embed.stalled.fp32", 0, -1)]
        assert any(started < d <= started + 0.6 for d in deadlines if d is not None), deadlines
    finally:
        _signal_tree(stalled.process.pid, signal.SIGCONT)
    with redis.Redis.from_url(redis_server.url) as broker:
        broker.delete("embed.cold.fp32")


def _signal_tree(pid: int, signum: int) -> None:
    subprocess.run(["pkill", f"-{signum}", "-P", str(pid)], check=False)
    os.kill(pid, signum)


def test_a_client_that_disconnects_cancels_its_texts(url, redis_server):
    """A live consumer of ``left`` (as a worker publishes it) that never claims: the request
    waits on the queue; its client closes the connection; the gateway marks the message's texts
    cancelled, so no worker computes them."""
    queue = "embed.left.fp32"
    parts = urlsplit(url)
    with redis.Redis.from_url(redis_server.url) as broker:
        broker.hset(rate_key(queue), "a-consumer", "1000")
        broker.zadd(live_key(queue), {"a-consumer": time.time() + 60})
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request("POST", "/v1/embeddings", headers={
                "Content-Type": "application/json"}, body=json.dumps(
                    {"model": "left", "input": "a caller who leaves early"}).encode())
            wait_until(lambda: broker.llen(queue) == 1)  # enqueued: the gateway waits for it
            task_id = open_envelope(broker.lindex(queue, 0)).task_id
            connection.close()
            wait_until(lambda: broker.hexists(cancel_key(queue), task_id))
        finally:
            connection.close()
            broker.delete(queue, rate_key(queue), live_key(queue), backlog_key(queue),
                          cancel_key(queue))


def test_what_cannot_be_answered_in_time_is_429_at_once_with_retry_after(sdk, redis_server):
    """A consumer of ``deep`` serves 10 texts/s (as a worker publishes it) and 1,000 texts wait:
    100 s of work, far past the gateway's 3 s deadline. The first request, before the gateway
    has any reading of the queue, is enqueued and times out; from then on the gateway knows,
    and refuses at once without enqueueing."""
    queue = "embed.deep.fp32"
    with redis.Redis.from_url(redis_server.url) as broker:
        broker.hset(rate_key(queue), "a-consumer", "10")
        broker.zadd(live_key(queue), {"a-consumer": time.time() + 60})
        broker.set(backlog_key(queue), 1000)
        try:
            with pytest.raises(openai.InternalServerError):  # 503: no worker answered in time
                sdk.with_options(timeout=10, max_retries=0).embeddings.create(
                    model="deep", input="the first, before any reading")
            depth = broker.llen(queue)
            started = time.perf_counter()
            with pytest.raises(openai.RateLimitError, match="overloaded") as caught:
                sdk.embeddings.create(model="deep", input="one more")
            assert time.perf_counter() - started < 1.0  # at once, not at the deadline
            assert int(caught.value.response.headers["retry-after"]) >= 90
            assert broker.llen(queue) == depth  # the refused request added nothing
        finally:
            broker.delete(queue, rate_key(queue), backlog_key(queue), live_key(queue))


def _langchain(url: str, **options) -> OpenAIEmbeddings:
    """LangChain's OpenAI embeddings aimed at the gateway, as its docs say for OpenAI-compatible
    servers: raw text, not tiktoken ids (embedq tokenizes for its own model)."""
    return OpenAIEmbeddings(model="fast", base_url=f"{url}/v1", api_key="unused",
                            check_embedding_ctx_length=False, max_retries=0, **options)


async def test_langchain_openai_embeddings_pointed_at_the_gateway(url, direct):
    texts = ["first document", "second document"]
    expected = direct.embed(texts, "fast", timeout=30)
    with openai.DefaultHttpxClient() as http:
        async with openai.DefaultAsyncHttpxClient() as http_async:
            clients = {"http_client": http, "http_async_client": http_async}
            embeddings = _langchain(url, **clients)
            np.testing.assert_allclose(embeddings.embed_documents(texts), expected, rtol=1e-6)
            np.testing.assert_allclose(embeddings.embed_query(texts[0]), expected[0], rtol=1e-6)
            np.testing.assert_allclose(await embeddings.aembed_documents(texts), expected,
                                       rtol=1e-6)
            short = _langchain(url, dimensions=32, **clients)
            assert len(await short.aembed_query(texts[0])) == 32


def test_keys_are_checked_when_configured(start_gateway, config):
    _, keyed = start_gateway(config, **KEYS)
    with openai.OpenAI(base_url=f"{keyed}/v1", api_key="k-two", max_retries=0) as good:
        assert len(good.embeddings.create(model="fast", input="hello").data) == 1
    with (openai.OpenAI(base_url=f"{keyed}/v1", api_key="k-three", max_retries=0) as wrong,
          pytest.raises(openai.AuthenticationError, match="not accepted")):
        wrong.embeddings.create(model="fast", input="hello")
    status, answer = _post(keyed, b'{"input": "x", "model": "fast"}')[::2]
    assert status == 401
    assert answer["error"]["code"] == "invalid_api_key"
    assert _get(keyed, "/v1/models")[0] == 401
    assert _get(keyed, "/health")[0] == 200  # probes need no key


def test_beyond_loopback_without_keys_it_refuses_to_start(redis_server, config):
    run = subprocess.run(
        [sys.executable, "-m", "embedq.cli", "gateway", "--host", "0.0.0.0",
         "--port", str(free_port())],
        env=worker_env(redis_server.url, config), capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "open to the network" in run.stderr
    assert "EMBEDQ_GATEWAY_API_KEYS" in run.stderr


def test_several_gateways_share_one_redis(url, start_gateway, config, direct):
    _, second = start_gateway(config)
    texts = [f"text number {i}" for i in range(40)]
    clients = [openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
               for base in (url, second)]

    def one(i: int) -> list[float]:
        reply = clients[i % 2].embeddings.create(model="fast", input=texts[i],
                                                 encoding_format="float")
        return reply.data[0].embedding

    with ThreadPoolExecutor(8) as pool:
        vectors = list(pool.map(one, range(len(texts))))
    for client in clients:
        client.close()
    np.testing.assert_allclose(vectors, direct.embed(texts, "fast", timeout=30), rtol=1e-6)


def test_health_and_metrics(url, sdk):
    sdk.embeddings.create(model="fast", input=["counted", "twice"])
    with pytest.raises(openai.NotFoundError):
        sdk.embeddings.create(model="no-such-use-case", input="x")
    status, body = _get(url, "/health")
    health = json.loads(body)
    assert status == 200
    assert health["status"] == "ok"
    assert health["routes"]["fast"]["consumers"] >= 1
    assert health["routes"]["cold"]["queue"] == "embed.cold.fp32"
    status, metrics = _get(url, "/metrics")
    text = metrics.decode()
    assert status == 200
    assert 'embedq_gateway_requests_total{status="200",use_case="fast"}' in text
    assert 'embedq_gateway_requests_total{status="404",use_case="-"}' in text
    assert 'embedq_gateway_texts_total{use_case="fast"}' in text
