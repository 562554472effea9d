"""Broker commands per request, as the broker counts them (``INFO commandstats``, commands run
inside the claim script included), on a real redis-server with the real producer and the worker's
own consumer (claim script, outbox, the hashing model) stepped in this process.

Nothing here depends on timing: each request is pushed, claimed and answered one step at a time,
so a change that adds a command to the message path fails here on any machine. The only
commands whose number depends on the clock are listed apart (`_CLOCKED`) and left out.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest
import redis

from embedq.config.registry import load_registry
from embedq.config.settings import Settings
from embedq.producer.client import EmbeddingClient
from embedq.worker.batching import BatchPolicy
from embedq.worker.claims import QueueClaims
from embedq.worker.consumer import Consumer
from embedq.worker.loaded_models import LoadedModels
from embedq.worker.replies import ReplyTarget
from embedq.worker.runtime import queue_guard
from embedq.worker.service import EmbedService
from tests.support import expected_hashing, make_client, wait_until

QUEUE = "embed.hashing.fp32"
# Commands whose count follows the clock, not the requests: the sender reads the consumers'
# rates and live consumers when its last reading is over 0.1 s old (HGETALL, ZRANGEBYSCORE), a
# consumer publishes its rate at most every 0.25 s unless it moved (HSET), and our own INFO.
_CLOCKED = {"hgetall", "zrangebyscore", "hset", "info"}

# One lone request, every command the broker runs for it: 14 (18 before the issue-21 cut to
# the claim, the commit and the events; the issue-21 baseline ran 34).
LONE_REQUEST = Counter({
    # producer: the push pipeline (message, backlog counter), the reply
    "lpush": 1, "incrby": 1, "blpop": 1,
    # consumer: the blocking wait, then the claim script and what it runs (a delivery count,
    # which of the queue, the bulk list and the cancel marks exist at all, the backlog)
    "blmove": 1, "evalsha": 2, "hincrby": 1, "exists": 1, "set": 1,
    # consumer: the batch's one commit script (reply and its expiry, acknowledgement, task
    # events: the producer's task-sent travels with the worker's received and succeeded)
    "rpush": 1, "expire": 1, "del": 1, "hdel": 1, "publish": 1,
})

# Sixteen one-text messages pushed together and served as one batch: 20 commands in all. The
# claim takes the fifteen the blocking wait left in one LRANGE, LTRIM and LPUSH (into flight),
# with one HMGET and one HSET of their delivery counts (HSET is a clocked name: not counted).
SIXTEEN_IN_ONE_BATCH = Counter({
    "lpush": 2, "incrby": 1, "blpop": 1, "lpop": 1,
    "blmove": 1, "evalsha": 2, "hincrby": 1, "exists": 1, "lindex": 1, "lrange": 1,
    "hmget": 1, "ltrim": 1, "set": 1,
    "rpush": 1, "expire": 1, "del": 1, "hdel": 1, "publish": 1,
})


def _calls(broker: redis.Redis) -> Counter[str]:
    stats = broker.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(entry["calls"])
                    for name, entry in stats.items()})


def _counted(before: Counter[str], after: Counter[str]) -> Counter[str]:
    """What ran between two readings, without the clock's commands."""
    ran = after - before
    return Counter({name: calls for name, calls in ran.items() if name not in _CLOCKED})


def _reply_reads(ran: Counter[str], *, at_least: int, at_most: int, expected: Counter[str],
                 times: int) -> None:
    """Check the reply listener's reads, then set them to what ``expected`` says. They follow
    thread scheduling, not the requests: the listener reads on (``LPOP``) when it sees more
    messages unanswered, which a fast next request can make it do; the broker counts a
    ``BLPOP`` when it is sent, so the listener's next wait may fall on either side of a
    reading; and a wait that times out (a second without a reply: a stalled machine) adds one."""
    reads = ran["blpop"] + ran["lpop"]
    assert at_least <= reads <= at_most, ran
    for name in ("blpop", "lpop"):
        ran[name] = expected[name] * times
        if not ran[name]:
            del ran[name]


@pytest.fixture
def consumer(redis_server, hashing_config, broker) -> Consumer:
    """The worker's consumer of the hashing queue, in this process (stepped by the test)."""
    settings = Settings(redis_url=redis_server.url, config_dir=hashing_config,  # type: ignore[arg-type]
                        cache_enabled=False)
    registry = load_registry(hashing_config)
    service = EmbedService(registry, settings, LoadedModels(registry, settings))
    claims = QueueClaims(redis.Redis.from_url(redis_server.url), QUEUE, "budget-consumer")
    target = ReplyTarget(queue=QUEUE, inflight=claims.inflight, hostname="budget@test", db=0,
                         reply_ttl_s=settings.result_expires_s, events=True, celery=None)
    return Consumer(claims, target, service.handle, queue_guard(registry, QUEUE),
                    BatchPolicy.from_settings(settings), threading.Lock(), poll_s=5.0,
                    sweep_every_s=3600.0)


def _served(client: EmbeddingClient, consumer: Consumer, texts: list[str]) -> np.ndarray:
    """Submit, wait (in process, no Redis) until the sender's push is done, serve one batch."""
    asked = time.monotonic()
    job = client.submit(texts)
    load = client._connected().link(client.registry.route(None)).dispatcher.load

    def pushed() -> bool:
        reading = load.reading(QUEUE)
        return reading is not None and reading.at >= asked

    wait_until(pushed)
    consumer.step()
    return job.get(timeout=30)


def test_a_lone_request_costs_the_broker_14_commands(redis_server, hashing_config, broker,
                                                     consumer):
    texts = [f"lone request {i} about red shoes" for i in range(23)]
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as client:
        for text in texts[:3]:  # connections made, scripts loaded, the first sweep done
            _served(client, consumer, [text])
        before = _calls(broker)
        vectors = [_served(client, consumer, [text]) for text in texts[3:]]
        ran = _counted(before, _calls(broker))
    np.testing.assert_allclose(np.concatenate(vectors), expected_hashing(hashing_config,
                                                                         texts[3:]), atol=1e-6)
    requests = len(texts) - 3
    _reply_reads(ran, at_least=requests - 1, at_most=2 * requests + 2, expected=LONE_REQUEST,
                 times=requests)
    assert ran == Counter({name: calls * requests for name, calls in LONE_REQUEST.items()})
    assert ran.total() / requests == LONE_REQUEST.total() == 14


def test_sixteen_messages_in_one_batch_cost_20_commands(redis_server, hashing_config, broker,
                                                        consumer):
    texts = [f"batched text {i} about blue skies" for i in range(16)]
    # chunk_size=1: one message per text, all sixteen in the sender's one push
    with make_client(redis_server.url, hashing_config, cache_enabled=False,
                     chunk_size=1) as client:
        _served(client, consumer, ["warm up"])
        before = _calls(broker)
        vectors = _served(client, consumer, texts)
        ran = _counted(before, _calls(broker))  # before close: its last reply wait ends then
    np.testing.assert_allclose(vectors, expected_hashing(hashing_config, texts), atol=1e-6)
    _reply_reads(ran, at_least=0, at_most=4, expected=SIXTEEN_IN_ONE_BATCH, times=1)
    assert ran == SIXTEEN_IN_ONE_BATCH
    assert ran.total() == 20  # 1.25 per message (the per-message claim and ack of before: ~6)
