"""Restoring a dead consumer's messages: a pool process that died under a living worker leaves
its messages suspect (their deliveries count toward the poison limit); a worker that died as a
whole (killed, crashed) does not — killing workers again and again never dead-letters an
innocent message (the full chaos run's ten kills found that)."""

from __future__ import annotations

import hashlib
import os
import subprocess

import redis

from embedq.tasks.names import deliveries_key, inflight_key
from embedq.worker.claims import QueueClaims
from embedq.worker.processes import consumer_id

QUEUE = "embed.hashing.fp32"


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _consumer(pid: int, parent: int) -> str:
    """A consumer id of this host and pid namespace for the given pool and worker pids."""
    host, namespace, _, tail = consumer_id().rsplit(":", 3)
    return f"{host}:{namespace}:{pid}:{parent}-{tail.split('-', 1)[1]}"


def _restored_count(redis_server, parent: int) -> int:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    dead = _consumer(_dead_pid(), parent)
    message = b'{"a message": 1}'
    client.rpush(inflight_key(QUEUE, dead), message)
    client.hset(deliveries_key(QUEUE), hashlib.sha1(message).hexdigest(), 2)
    claims = QueueClaims(client, QUEUE, _consumer(os.getpid(), os.getppid()))
    assert claims.sweep(everything=True) == 1
    assert client.lrange(QUEUE, 0, -1) == [message]
    return int(client.hvals(deliveries_key(QUEUE))[0])


def test_a_dead_pool_process_under_a_living_worker_keeps_its_messages_suspect(redis_server):
    assert _restored_count(redis_server, parent=os.getppid()) == 2  # a living parent


def test_a_whole_worker_killed_refunds_the_deliveries(redis_server):
    assert _restored_count(redis_server, parent=_dead_pid()) == 1
