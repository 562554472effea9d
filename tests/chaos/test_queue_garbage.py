"""Garbage, truncated entries and refused bodies on the queues: the worker lives, nothing
valid is lost, everything else waits in the dead letters with its reason."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedq.tasks.dead_letters import count_dead, list_dead, replay
from embedq.tasks.names import reply_key
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.wire import Reply, build_message
from tests.chaos.conftest import report, scale
from tests.support import expected_hashing, make_client, wait_until

QUEUE = "embed.hashing.fp32"


def _request(texts: list[str], **changes: object) -> EmbedRequest:
    fields = {"texts": texts, "route": "fast", "model": "hashing", "precision": "fp32",
              "dim": 64, "normalize": True, "output_dtype": "float32", **changes}
    return EmbedRequest(**fields)  # type: ignore[arg-type]


def _message(request: EmbedRequest, reply: str) -> bytes:
    return build_message(request, queue=QUEUE, reply_to=reply, origin="chaos", now=time.time())[1]


@pytest.fixture(scope="module")
def worker(redis_server, start_worker, hashing_config):
    return start_worker("hashing", "fp32", hashing_config, "-c", "2", EMBEDQ_CACHE_ENABLED="false")


def _with_body(raw: bytes, change: Callable[[list[Any]], list[Any]]) -> bytes:
    """A message with its (msgpack) body changed as a foreign producer might write it."""
    envelope = json.loads(raw)
    body = msgpack.unpackb(base64.b64decode(envelope["body"]))
    envelope["body"] = base64.b64encode(msgpack.packb(change(body))).decode()
    return json.dumps(envelope).encode()


def test_garbage_and_refused_messages(redis_server, worker, hashing_config):
    broker = redis.Redis.from_url(redis_server.url)
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as client:
        client.embed(["warm up"], timeout=120)
        listen = reply_key("chaos-listener")
        valid = _message(_request(["a valid one"]), listen)
        envelope = json.loads(valid)
        pickled = {**envelope, "content-type": "application/x-python-serialize"}
        future = _with_body(_message(_request(["from the future"]), listen),
                            lambda body: [[{**body[0][0], "v": 99}], {}, body[2]])
        other_model = _message(_request(["for another model"], model="mpnet"), listen)
        garbage = [b"not json", valid[: len(valid) // 2], b"{}", b'{"headers": {}}',
                   json.dumps({**envelope, "body": "!!not base64!!"}).encode(),
                   json.dumps(pickled).encode(), future, other_model, b"\xff\xfe\x00binary"]
        broker.lpush(QUEUE, *garbage)
        texts = [f"still served {i}" for i in range(scale(50, 200))]
        vectors = client.embed(texts, timeout=60)
        wait_until(lambda: count_dead(broker, QUEUE) == len(garbage), timeout=60)
        replies = [Reply.from_wire(blob) for blob in broker.lrange(listen, 0, -1)]
    correct = int(np.isclose(vectors, expected_hashing(hashing_config, texts),
                             atol=1e-7).all(axis=1).sum())
    reasons = [record.reason for record in list_dead(broker, QUEUE, 100)]
    assert any("not a Celery task message" in r for r in reasons)
    assert any("refused: embedq accepts only" in r for r in reasons)
    assert any("schema version 99" in r for r in reasons)
    assert any("asks for mpnet at fp32" in r for r in reasons)
    # The refused messages that named a producer told it so, at once and typed.
    assert sorted(reply.error_type for reply in replies) == ["PayloadError"] * 3
    report("garbage and refused messages", len(texts), correct, worker.process.poll() is None,
           f"{len(garbage)} bad entries dead-lettered with their reasons")


def test_replayed_dead_letters_come_back(redis_server, worker, hashing_config):
    broker = redis.Redis.from_url(redis_server.url)
    dead = count_dead(broker, QUEUE)
    assert replay(broker, QUEUE, dead) == dead
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as client:
        client.embed(["a barrier after the replay"], timeout=60)
    wait_until(lambda: count_dead(broker, QUEUE) == dead, timeout=60)  # garbage stays garbage


bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                     st.sampled_from(["body", "headers", "properties", "id", "content-type",
                                      "embedq_reply", "embedq_texts", "task"]), inner,
                     max_size=5), max_leaves=12).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(bodies, min_size=1000, max_size=1000))
def test_a_thousand_generated_bodies(redis_server, worker, hashing_config, entries):
    broker = redis.Redis.from_url(redis_server.url)
    before = count_dead(broker, QUEUE)
    broker.lpush(QUEUE, *entries)
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as client:
        texts = ["served after a thousand bad entries"]
        vectors = client.embed(texts, timeout=120)
    wait_until(lambda: broker.llen(QUEUE) == 0, timeout=120)
    dead = count_dead(broker, QUEUE) - before
    correct = int(np.allclose(vectors, expected_hashing(hashing_config, texts), atol=1e-7))
    assert dead == len(entries), f"{len(entries) - dead} generated entries were not dead-lettered"
    report("1,000 generated message bodies", 1, correct, worker.process.poll() is None,
           f"{dead} dead-lettered")
