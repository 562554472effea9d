"""``embedq dead-letters list|replay|drop`` against a real broker and a real worker."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time

import redis

from embedq.tasks.dead_letters import count_dead, list_dead, replay
from embedq.tasks.names import dead_key, reply_key
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.wire import DeadLetter, build_message
from tests.faults import CuttingProxy
from tests.support import make_client, wait_until, worker_env

QUEUE = "embed.hashing.fp32"


def _embedq(url: str, config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "embedq.cli", "dead-letters", *args],
                          env=worker_env(url, config), capture_output=True, text=True,
                          timeout=60, check=False)


def test_list_replay_and_drop(redis_server, start_worker, hashing_config):
    start_worker("hashing", "fp32", hashing_config, "-c", "1", EMBEDQ_CACHE_ENABLED="false")
    broker = redis.Redis.from_url(redis_server.url)
    request = EmbedRequest(texts=["replay me"], route="fast", model="hashing", precision="fp32",
                           dim=64, normalize=True, output_dtype="float32")
    listen = reply_key("operator-test")
    _, raw = build_message(request, queue=QUEUE, reply_to=listen, origin="test", now=time.time())
    broker.lpush(dead_key(QUEUE), DeadLetter("a worker ran out of memory", QUEUE, time.time(), 3,
                                             raw).encode())
    broker.lpush(QUEUE, b"garbage from somewhere")
    with make_client(redis_server.url, hashing_config) as client:
        client.embed(["a barrier: the garbage was read before this"], timeout=60)
    wait_until(lambda: count_dead(broker, QUEUE) == 2)

    listed = _embedq(redis_server.url, hashing_config, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)[QUEUE]
    assert records["count"] == 2
    reasons = {row["reason"] for row in records["newest"]}
    assert "a worker ran out of memory" in reasons
    assert any("not a Celery task message" in reason for reason in reasons)
    assert {row.get("texts") for row in records["newest"]} == {1, None}

    replayed = _embedq(redis_server.url, hashing_config, "replay", "--queue", QUEUE, "--limit", "1")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1" in replayed.stdout
    wait_until(lambda: broker.llen(listen) == 1, timeout=60)  # the oldest: the real message
    assert count_dead(broker, QUEUE) == 1  # the garbage stays dead

    dropped = _embedq(redis_server.url, hashing_config, "drop", "--queue", QUEUE)
    assert "dropped 1" in dropped.stdout
    assert count_dead(broker, QUEUE) == 0
    refused = _embedq(redis_server.url, hashing_config, "drop")
    assert refused.returncode != 0
    assert "--queue" in refused.stderr


def test_a_replay_cut_off_midway_loses_no_message(redis_server):
    """The connection drops right after the replay's pop reaches Redis: every message is still
    either a dead letter or back on its queue (taking a record and pushing its message are one
    transaction)."""
    queue = "embed.unserved.fp32"  # no worker of this module consumes it
    broker = redis.Redis.from_url(redis_server.url)
    broker.delete(dead_key(queue), queue)
    raws = []
    for i in range(3):
        request = EmbedRequest(texts=[f"dead {i}"], route="fast", model="hashing",
                               precision="fp32", dim=64, normalize=True, output_dtype="float32")
        raws.append(build_message(request, queue=queue, reply_to=reply_key("t"), origin="test",
                                  now=time.time())[1])
        broker.lpush(dead_key(queue), DeadLetter("why", queue, time.time(), 3, raws[-1]).encode())
    host, port = broker.connection_pool.connection_kwargs["host"], redis_server.port
    with CuttingProxy((host, port), trigger=b"RPOP") as proxy:
        cut = redis.Redis(host="127.0.0.1", port=proxy.port)
        with contextlib.suppress(redis.ConnectionError):
            replay(cut, queue, 3)
        assert proxy.cuts == 1
    kept = [record.raw for record in list_dead(broker, queue, 10)] + broker.lrange(queue, 0, -1)
    assert sorted(kept) == sorted(raws)
    broker.delete(dead_key(queue), queue)
