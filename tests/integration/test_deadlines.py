"""Deadlines, cancellation, shedding and priorities with real Redis and real worker processes:
no compute for a caller that has left, and a refusal at once for what cannot be served in time."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import gc
import json
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest
import redis

from embedq.config.errors import EmbedTimeoutError, OverloadedError, PayloadError
from embedq.tasks.names import backlog_key, bulk_queue, cancel_key, live_key, rate_key
from embedq.tasks.schema import EmbedRequest
from embedq.tasks.wire import DROPPED_ROW, Reply
from tests.support import HASHING_MODEL, make_client, wait_for_consumers, wait_until, write_config

QUEUE = "embed.hashing.fp32"


def _batches(worker) -> list[dict[str, object]]:
    rows = []
    for line in worker.lines:
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if row.get("event") in ("batch_embedded", "batch_dropped"):
                rows.append(row)
    return rows


def _start(start_worker, hashing_config, **env: str):
    return start_worker("hashing", "fp32", hashing_config, "-c", "1",
                        EMBEDQ_CACHE_ENABLED="false", EMBEDQ_LOG_FORMAT="json", **env)


def test_a_request_whose_caller_left_is_never_computed(broker, redis_server, start_worker,
                                                       hashing_config):
    """Sent while no worker runs, given up at its deadline; the worker that comes later drops
    it uncomputed and answers the live request behind it."""
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as client:
        gone = client.submit(["nobody waits for this any more"], timeout=0.3)
        with pytest.raises(EmbedTimeoutError):
            gone.get()
        worker = _start(start_worker, hashing_config)
        wait_for_consumers(redis_server.url, QUEUE)
        assert client.embed(["a live one"], timeout=30).shape == (1, 64)
    wait_until(lambda: sum(int(b.get("expired_texts", 0)) for b in _batches(worker)) >= 1)
    assert sum(int(b.get("batch_texts", 0)) for b in _batches(worker)) == 1
    assert broker.llen(QUEUE) == 0
    worker.stop()


def test_a_cancelled_request_is_skipped_and_its_marks_cleared(broker, redis_server, start_worker,
                                                              hashing_config):
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as client:
        job = client.submit(["cancel me", "and me"], timeout=60)
        wait_until(lambda: broker.llen(QUEUE) == 1)
        assert job.cancel()
        wait_until(lambda: broker.hlen(cancel_key(QUEUE)) == 1)  # the workers are told
        with pytest.raises(CancelledError):
            job.get(1)
        worker = _start(start_worker, hashing_config)
        wait_for_consumers(redis_server.url, QUEUE)
        client.embed(["after"], timeout=30)
    wait_until(lambda: broker.hlen(cancel_key(QUEUE)) == 0)
    assert sum(int(b.get("expired_texts", 0)) for b in _batches(worker)) == 2
    assert sum(int(b.get("batch_texts", 0)) for b in _batches(worker)) == 1
    worker.stop()


async def test_a_cancelled_aembed_cancels_its_texts(broker, redis_server, hashing_config):
    """An asyncio task cancelled while it waits (a client that disconnected) marks its rows."""
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as client:
        task = asyncio.ensure_future(client.aembed(["a web request"], timeout=60))
        await asyncio.to_thread(wait_until, lambda: broker.llen(QUEUE) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.to_thread(wait_until, lambda: broker.hlen(cancel_key(QUEUE)) == 1)


def test_rows_past_their_deadline_are_dropped_before_the_forward_pass(service_maker,
                                                                      hashing_config):
    """One coalesced message, two callers: the one whose deadline passed costs nothing."""
    service = service_maker(hashing_config, cache_enabled=False)
    request = EmbedRequest(texts=["gone", "here"], route="fast", model="hashing",
                           precision="fp32", dim=64, normalize=True, output_dtype="float32",
                           deadlines=[time.time() - 1, time.time() + 60])
    handled = service.handle([request])
    (result,) = handled.outcomes
    assert handled.dropped == 1
    assert result.errors == [(0, DROPPED_ROW)]
    assert abs(float((result.vectors[1] ** 2).sum()) - 1) < 1e-5


def test_deadlines_are_kept_per_prompt_when_prompts_share_a_batch(service_maker,
                                                                  hashing_config):
    """Issues 19 and 22 together: the same text under two prompts is two texts, each dropped
    or computed by its own callers' deadlines, and a computed one carries its prompt."""
    service = service_maker(hashing_config, cache_enabled=False)
    now = time.time()

    def request(texts: list[str], prompt: str, deadlines: list[float] | None) -> EmbedRequest:
        return EmbedRequest(texts=texts, route="fast", model="hashing", precision="fp32",
                            dim=64, normalize=True, output_dtype="float32", prompt=prompt,
                            deadlines=deadlines)

    handled = service.handle([request(["gone", "here"], "", [now - 1, now + 60]),
                              request(["gone", "here"], "query: ", [now + 60, now - 1])])
    plain, prompted = handled.outcomes
    assert handled.dropped == 2
    assert (plain.errors, prompted.errors) == ([(0, DROPPED_ROW)], [(1, DROPPED_ROW)])
    (alone,) = service.handle([request(["here", "query: gone", "gone"], "", None)]).outcomes
    np.testing.assert_allclose(plain.vectors[1], alone.vectors[0], atol=1e-6)
    np.testing.assert_allclose(prompted.vectors[0], alone.vectors[1], atol=1e-6)
    assert float(np.abs(prompted.vectors[0] - alone.vectors[2]).max()) > 1e-3  # prompt used


def test_a_celery_message_past_its_expires_is_revoked_not_computed(broker, redis_server,
                                                                  start_worker, hashing_config):
    from celery import Celery

    app = Celery("plain", broker=redis_server.url, backend=redis_server.url)
    # Celery's defaults (JSON): an embed worker answers in the serializer the message came in
    app.conf.accept_content = app.conf.result_accept_content = ["json", "msgpack"]
    request = EmbedRequest(texts=["too late"], route="fast", model="hashing", precision="fp32",
                           dim=64, normalize=True, output_dtype="float32")
    result = app.send_task("embedq.embed", args=[request.to_wire()], queue=QUEUE,
                           expires=datetime.datetime.now(datetime.UTC)
                           - datetime.timedelta(seconds=1))
    worker = _start(start_worker, hashing_config)
    wait_until(lambda: result.state == "REVOKED", timeout=60)
    assert sum(int(b.get("batch_texts", 0)) for b in _batches(worker)) == 0
    worker.stop()
    app.close()


def test_what_cannot_be_served_in_time_is_refused_at_once_and_bulk_never_is(
        broker, redis_server, hashing_config):
    """A consumer serves 10 texts/s and 1,000 wait: 100 s of work. After its first push the
    producer knows, and refuses a 2 s request at once, enqueueing nothing; bulk work waits.
    The rate a stopped consumer left behind is not counted: the pool is not that fast."""
    broker.hset(rate_key(QUEUE), mapping={"a-consumer": "10", "a-stopped-one": "100000"})
    broker.zadd(live_key(QUEUE), {"a-consumer": time.time() + 60})
    broker.set(backlog_key(QUEUE), 1000)
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as client:
        client.submit(["the first: no reading yet, so it is sent"], timeout=2)
        # The push is on the queue before the sender thread has read the pipeline's answers:
        # wait for the reading it records, not for the queue (a busy machine ran in between).
        load = client._connected().link(client.registry.route(None)).dispatcher.load
        wait_until(lambda: load.reading(QUEUE) is not None)
        assert broker.llen(QUEUE) == 1
        started = time.perf_counter()
        with pytest.raises(OverloadedError, match="overloaded") as caught:
            client.embed(["refused"], timeout=2)
        assert time.perf_counter() - started < 0.5
        assert caught.value.retry_after_s >= 90
        assert broker.llen(QUEUE) == 1
        client.submit(["bulk work"], bulk=True, timeout=60)
        wait_until(lambda: broker.llen(bulk_queue(QUEUE)) == 1)


def test_interactive_work_is_served_before_bulk(broker, redis_server, start_worker,
                                                hashing_config):
    with make_client(redis_server.url, hashing_config, cache_enabled=False,
                     chunk_size=8) as client:
        bulk = [client.submit([f"bulk {i}-{j}" for j in range(8)], bulk=True, timeout=120)
                for i in range(40)]
        wait_until(lambda: broker.llen(bulk_queue(QUEUE)) == 40)
        interactive = client.submit(["a web query"], timeout=60)
        wait_until(lambda: broker.llen(QUEUE) == 1)
        worker = _start(start_worker, hashing_config, EMBEDQ_BATCH_TEXTS="8")
        interactive.get()
        assert sum(job.ready() for job in bulk) <= 1  # at most the batch already in hand
        for job in bulk:
            job.get()
        worker.stop()


def _answer_with_error(broker: redis.Redis, error_type: str, error: str) -> None:
    """Take the one message off the queue and answer it as a worker would, with an error."""
    headers = json.loads(broker.rpop(QUEUE))["headers"]
    broker.rpush(headers["embedq_reply"],
                 Reply(headers["id"], error_type=error_type, error=error).to_wire())


def test_the_reply_listener_survives_a_reply_it_cannot_apply(broker, redis_server,
                                                             hashing_config):
    """A reply naming an error class that cannot be rebuilt from a message (it wants more
    arguments) fails its own caller only; the listener goes on serving the next calls."""
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as client:
        job = client.submit(["doomed"], timeout=30)
        wait_until(lambda: broker.llen(QUEUE) == 1)
        _answer_with_error(broker, "DataFileError", "a worker said so")
        with pytest.raises(Exception, match="DataFileError"):
            job.get(10)
        second = client.submit(["after the odd reply"], timeout=30)
        wait_until(lambda: broker.llen(QUEUE) == 1)
        _answer_with_error(broker, "PayloadError", "refused")
        with pytest.raises(PayloadError, match="refused"):
            second.get(10)  # answered: the listener lives


def test_the_sender_survives_a_group_that_fails_and_sends_the_others(broker, redis_server,
                                                                      hashing_config):
    from embedq.config.registry import load_registry
    from embedq.config.settings import Settings
    from embedq.producer.dispatch import Dispatcher
    from embedq.producer.jobs import Job, RequestSpec
    from embedq.producer.outstanding import Outstanding

    registry = load_registry(hashing_config)
    fast, half = registry.route("fast"), registry.route("half")

    def serving(route):  # a bug that strikes one route only
        if route.name == "half":
            raise ValueError("a bug in route resolution")
        return route

    settings = Settings(redis_url=redis_server.url, config_dir=hashing_config)
    dispatcher = Dispatcher(settings, broker, Outstanding(), "embedq:v1:reply:t", serving, None)
    try:
        bad = Job(RequestSpec(half, 32), ["x"], [0], deadline=time.time() + 30)
        good = Job(RequestSpec(fast, 64), ["y"], [0], deadline=time.time() + 30)
        dispatcher.submit(bad, [0])
        dispatcher.submit(good, [0])
        with pytest.raises(Exception, match="a bug in route resolution"):
            bad.future.result(10)
        wait_until(lambda: broker.llen(QUEUE) == 1)
        later = Job(RequestSpec(fast, 64), ["z"], [0], deadline=time.time() + 30)
        dispatcher.submit(later, [0])
        wait_until(lambda: broker.llen(QUEUE) == 2)  # the thread lives on
    finally:
        dispatcher.close()


def test_requests_leave_no_reference_cycles(broker, redis_server, start_worker, hashing_config):
    """Requests answered, awaited and given up free everything by reference counting: cyclic
    garbage per request is what makes the collector's full passes stall a busy producer's
    event loop (measured: 250 ms pauses at 1,200 requests/s), and with it every caller's
    deadline."""
    _start(start_worker, hashing_config)
    wait_for_consumers(redis_server.url, QUEUE)
    with make_client(redis_server.url, hashing_config, cache_enabled=False) as client:

        async def calls(tag: str) -> None:
            await asyncio.gather(*(client.aembed([f"{tag} {n}"], timeout=30) for n in range(20)))
            client.embed([f"{tag} sync"], timeout=30)
            with contextlib.suppress(TimeoutError):  # the caller leaves: its texts are cancelled
                await asyncio.wait_for(client.aembed([f"{tag} left"], timeout=30), 0.0001)

        asyncio.run(calls("warm"))  # first-use objects (connections, threads) are not garbage
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            asyncio.run(calls("counted"))
            gc.collect()
            cyclic = collections.Counter(type(o).__name__ for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert not {"Job", "Future", "EmbedJob", "Condition"} & set(cyclic), cyclic.most_common(10)


def test_under_load_callers_share_messages(broker, redis_server, tmp_path):
    """With work queued ahead (100 s of it, on a queue nobody consumes), callers who arrive a
    few milliseconds apart travel in one message; with no load known each goes out at once."""
    config = write_config(tmp_path, {"lonely": HASHING_MODEL}, {"r": {"model": "lonely"}}, "r")
    queue = "embed.lonely.fp32"

    def messages_for(count: int) -> int:
        with make_client(redis_server.url, config, cache_enabled=False) as client:
            first = client.submit(["the first: it reads the load"], timeout=600)
            wait_until(lambda: bool(first.job.task_ids))
            jobs = []
            for n in range(count):
                jobs.append(client.submit([f"caller {n} {time.time()}"], timeout=600))
                time.sleep(0.004)
            wait_until(lambda: all(job.job.task_ids for job in jobs))
            return len({task for job in jobs for task in job.job.task_ids})

    assert messages_for(5) >= 4  # no load known: nothing waits
    broker.hset(rate_key(queue), "a-consumer", "10")
    broker.zadd(live_key(queue), {"a-consumer": time.time() + 60})
    broker.set(backlog_key(queue), 1000)
    assert messages_for(5) <= 2
