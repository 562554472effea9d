"""Texts waiting per queue (the `embedq_queue_texts_waiting` gauge) and the worker probe, on a
real Redis with real queue entries."""

from __future__ import annotations

import time

import redis

from embedq.ops.dashboard.exporter import queue_registry
from embedq.ops.dashboard.texts_gauge import texts_reader
from embedq.ops.probe import serving_here
from embedq.tasks.liveness import mark_alive
from embedq.tasks.names import bulk_queue
from embedq.tasks.queue_texts import texts_waiting
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.wire import build_message


def _push(client: redis.Redis, queue: str, count: int, *, bulk: bool = False) -> None:
    request = EmbedRequest(texts=[f"text {i}" for i in range(count)], route="r", model="m",
                           precision="fp32", dim=8, normalize=True,
                           output_dtype="float32")
    _, raw = build_message(request, queue=queue, reply_to="embedq:v1:reply:x", origin="t",
                           now=time.time(), bulk=bulk)
    client.lpush(bulk_queue(queue) if bulk else queue, raw)


def test_texts_are_counted_from_the_headers_and_estimated_past_the_oldest(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    for count in (1, 64, 7):
        _push(client, "embed.m.fp32", count)
    client.lpush("embed.m.fp32", b'{"plain": "celery message"}')  # no header: one text
    assert texts_waiting(client, ["embed.m.fp32", "embed.empty.fp32"]) == [73, 0]
    for _ in range(10):
        _push(client, "embed.big.fp32", 10)
    # Reading only the 2 oldest and 2 newest entries: their mean scaled up to the depth.
    assert texts_waiting(client, ["embed.big.fp32"], each_end=2) == [100]
    _push(client, "embed.big.fp32", 50)  # 150 texts now, estimated as (10+10+10+50)/4 x 11
    assert texts_waiting(client, ["embed.big.fp32"], each_end=2) == [220]
    assert texts_waiting(client, ["embed.big.fp32"], each_end=6) == [150]  # all read: exact
    client.script_flush()  # Redis forgot the script: it is loaded again
    assert texts_waiting(client, ["embed.m.fp32"]) == [73]
    _push(client, "embed.m.fp32", 20, bulk=True)  # bulk work waits in its own list: counted
    assert texts_waiting(client, ["embed.m.fp32"]) == [93]


def test_the_gauge_is_on_the_dashboard_registry(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    _push(client, "embed.m.fp32", 5)
    registry = queue_registry(lambda: [], texts_reader(client, ["embed.m.fp32"]))
    value = registry.get_sample_value("embedq_queue_texts_waiting",
                                      {"queue": "embed.m.fp32", "model": "m",
                                       "precision": "fp32"})
    assert value == 5.0


def test_the_probe_wants_an_unexpired_entry_of_this_host(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    assert not serving_here(client, "embed.m.fp32", host="pod-a")
    mark_alive(client, [("embed.m.fp32", "pod-b:1:2:3-x")], ttl_s=30)
    assert not serving_here(client, "embed.m.fp32", host="pod-a")
    mark_alive(client, [("embed.m.fp32", "pod-a:1:2:3-x")], ttl_s=-1)  # expired
    assert not serving_here(client, "embed.m.fp32", host="pod-a")
    mark_alive(client, [("embed.m.fp32", "pod-a:1:9:3-y")], ttl_s=30)
    assert serving_here(client, "embed.m.fp32", host="pod-a")
