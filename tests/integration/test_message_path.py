"""The web-request path with a real worker: coalescing, sharing one client, asyncio, processes.

The hashing model makes every expected vector computable in-process, so each caller's rows are
checked exactly, whatever other callers sent in the same message.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedq.config.errors import EmbedqError, EmbedTimeoutError
from embedq.tasks.names import REPLY_NAMESPACE, reply_key
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.wire import build_message
from tests.support import expected_hashing, make_client, wait_until

WORDS = ["red", "shoe", "blue", "sky", "fast", "car", "green", "tree", "old", "book"]


@pytest.fixture(scope="module")
def client(redis_server, start_worker, hashing_config):
    # No vector cache anywhere: a hit would come back through float16 storage, and these tests
    # compare every row exactly with what the model computes.
    start_worker("hashing", "fp32", hashing_config, "-c", "2", EMBEDQ_CACHE_ENABLED="false")
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as shared:
        shared.embed(["warm up"], timeout=120)  # the barrier: a real reply
        yield shared


def _check(config, texts, vectors):
    np.testing.assert_allclose(vectors, expected_hashing(config, texts), rtol=1e-6, atol=1e-7)


texts_strategy = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join),
    min_size=1, max_size=9)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(texts_strategy, min_size=1, max_size=24), seed=st.integers(0, 2**16))
def test_coalesced_callers_get_their_own_rows_in_order(client, hashing_config, calls, seed):
    """Any number of callers, any sizes and repeats, any interleaving: each gets its rows."""
    order = random.Random(seed)
    start = threading.Barrier(len(calls))

    def call(texts):
        start.wait()
        if order.random() < 0.5:
            return client.embed(texts, timeout=60)
        return client.submit(texts).get(timeout=60)

    with ThreadPoolExecutor(len(calls)) as pool:
        results = list(pool.map(call, calls))
    for texts, vectors in zip(calls, results, strict=True):
        _check(hashing_config, texts, vectors)


def test_one_client_shared_by_32_threads_for_thousands_of_calls(client, hashing_config):
    failures: list[BaseException] = []

    def worker(seed: int) -> int:
        rng = random.Random(seed)
        done = 0
        for _ in range(100):
            texts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 6)))
                     for _ in range(rng.randint(1, 3))]
            try:
                _check(hashing_config, texts, client.embed(texts, timeout=60))
                done += 1
            except BaseException as exc:
                failures.append(exc)
        return done

    with ThreadPoolExecutor(32) as pool:
        answered = sum(pool.map(worker, range(32)))
    assert not failures, failures[:3]
    assert answered == 3200


def test_a_caller_timing_out_leaves_the_others_untouched(client, hashing_config):
    start = threading.Barrier(9)

    def patient(i: int) -> np.ndarray:
        start.wait()
        return client.embed([f"patient caller {i}"], timeout=60)

    def hasty() -> None:
        start.wait()
        with pytest.raises(EmbedTimeoutError):
            client.embed(["hasty caller"], timeout=0.000001)

    with ThreadPoolExecutor(9) as pool:
        futures = [pool.submit(patient, i) for i in range(8)]
        pool.submit(hasty).result()
        for i, future in enumerate(futures):
            _check(hashing_config, [f"patient caller {i}"], future.result())


def test_hundreds_of_concurrent_aembed_calls_on_one_event_loop(client, hashing_config):
    texts = [f"async caller {i} {WORDS[i % 10]}" for i in range(600)]

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(client.aembed([t], timeout=60) for t in texts))

    results = asyncio.run(main())
    _check(hashing_config, texts, np.concatenate(results))


def test_aembed_refuses_bad_input_before_enqueueing(client):
    async def main() -> None:
        with pytest.raises(EmbedqError, match="text #1"):
            await client.aembed(["fine", ""])

    asyncio.run(main())


def test_matryoshka_dim_is_chosen_per_request(client, hashing_config):
    vectors = client.embed(["short vector please"], dim=32, timeout=60)
    assert vectors.shape == (1, 32)
    with pytest.raises(EmbedqError, match="choose one of 64, 32, 16"):
        client.embed(["no"], dim=17)


def test_read_replies_leave_nothing_and_unread_ones_expire(client, redis_server):
    broker = redis.Redis.from_url(redis_server.url)
    client.embed(["leave nothing behind"], timeout=60)
    assert not [k for k in broker.scan_iter(match=f"{REPLY_NAMESPACE}:*") if broker.llen(k)]
    # A producer that died with a request in flight: its reply list has no reader any more.
    orphan = reply_key("a-producer-that-died")
    request = EmbedRequest(texts=["nobody reads this"], route="fast", model="hashing",
                           precision="fp32", dim=64, normalize=True, output_dtype="float32")
    _, raw = build_message(request, queue="embed.hashing.fp32", reply_to=orphan, origin="test",
                           now=time.time())
    broker.lpush("embed.hashing.fp32", raw)
    wait_until(lambda: broker.llen(orphan) == 1, timeout=60)
    assert 0 < broker.ttl(orphan) <= client.settings.result_expires_s


def _senders() -> int:
    return sum(thread.name == "embedq-sender" for thread in threading.enumerate())


def test_close_stops_the_threads_and_refuses_new_calls(redis_server, hashing_config):
    before = _senders()
    closing = make_client(redis_server.url, hashing_config)
    closing.embed(["before close"], timeout=60)
    assert _senders() == before + 1
    closing.close()
    assert _senders() == before
    with pytest.raises(EmbedqError, match="closed"):
        closing.embed(["after close"])


def _producer_process(url: str, folder: str, seed: int) -> int:
    config = Path(folder)
    with make_client(url, config, cache_enabled=False) as own:
        rng = random.Random(seed)
        texts_by_call = [[f"process {seed} call {i} {rng.choice(WORDS)}"] for i in range(40)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda t: own.embed(t, timeout=60), texts_by_call))
    for texts, vectors in zip(texts_by_call, results, strict=True):
        _check(config, texts, vectors)
    return len(results)


def test_four_producer_processes_of_four_threads(client, redis_server, hashing_config):
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        counts = pool.starmap(_producer_process,
                              [(redis_server.url, str(hashing_config), seed) for seed in range(4)])
    assert counts == [40] * 4


def test_a_client_used_before_a_fork_works_in_the_child(client):
    client.embed(["the parent uses it first"], timeout=60)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's threads are gone, the client starts afresh
        outcome = b"no answer"
        try:
            shape = client.embed(["the child uses it too"], timeout=60).shape
            outcome = b"ok" if shape == (1, 64) else repr(shape).encode()
        except BaseException as exc:
            outcome = repr(exc).encode()[:500]
        finally:
            os.write(write, outcome)
            os._exit(0)
    os.close(write)
    outcome = os.read(read, 1000)
    os.waitpid(pid, 0)
    assert outcome == b"ok"
