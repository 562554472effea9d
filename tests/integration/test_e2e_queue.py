"""The queue path end to end on the hashing model: ordering, plain Celery producers and
workers, bad messages, task events for Flower."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from celery.result import AsyncResult

from embedq.config.errors import InvalidInputError, PayloadError
from embedq.config.settings import Settings
from embedq.ops.redis_server import RedisServer
from embedq.tasks import EMBED_TASK, EmbedRequest, EmbedResult
from embedq.tasks.app import create_app
from tests.support import (
    WorkerProcess,
    expected_hashing,
    make_client,
    task_events,
    wait_until,
    worker_env,
)

QUEUE = "embed.hashing.fp32"


@pytest.fixture(scope="module")
def client(redis_server, start_worker, hashing_config):
    start_worker("hashing", "fp32", hashing_config, "-c", "2")
    with make_client(redis_server.url, hashing_config) as shared:
        yield shared


@pytest.fixture(scope="module")
def celery_app(redis_server, client):
    """A plain Celery producer, as an older embedq producer or any Celery user would send."""
    return create_app(Settings(redis_url=redis_server.url))


def _expected(config, texts: list[str]) -> np.ndarray:
    return expected_hashing(config, texts)


def _release(result: AsyncResult) -> None:
    """Forget a plain Celery result now, while Redis still answers: Celery's ``__del__`` would
    unsubscribe later, whenever the garbage collector runs, perhaps after the server is gone."""
    result.forget()
    result.backend.remove_pending_result(result)
    result.backend = None


def test_embed_many_keeps_order_and_loses_nothing(client, hashing_config):
    texts = [f"document number {i} about topic {i % 97}" for i in range(5000)]
    blocks = list(client.embed_many(iter(texts), "fast", chunk_size=64, max_in_flight=8,
                                    timeout=120))
    vectors = np.concatenate(blocks)
    assert vectors.shape == (5000, 64)
    np.testing.assert_allclose(vectors, _expected(hashing_config, texts), rtol=1e-6, atol=1e-7)


def test_output_dtype_and_dim_follow_the_route(client, hashing_config):
    vectors = client.embed(["some text", "other text"], "half", timeout=60)
    assert vectors.dtype == np.float16
    assert vectors.shape == (2, 32)


def test_a_plain_celery_producer_gets_its_result_from_the_result_backend(celery_app,
                                                                         hashing_config):
    request = EmbedRequest(texts=["from a plain celery producer"], route="fast", model="hashing",
                           precision="fp32", dim=64, normalize=True, output_dtype="float32")
    sent = celery_app.send_task(EMBED_TASK, args=[request.to_wire()], queue=QUEUE)
    result = EmbedResult.from_wire(sent.get(timeout=60))
    _release(sent)
    np.testing.assert_allclose(result.vectors, _expected(hashing_config, request.texts),
                               rtol=1e-6, atol=1e-7)


def test_a_malformed_message_fails_alone(client, celery_app):
    bad = celery_app.send_task(EMBED_TASK, args=["not a request"], queue=QUEUE)
    # read as a short call, embed(texts, use_case, dim): the texts are not a list
    with pytest.raises(InvalidInputError, match="texts must be a list of strings"):
        bad.get(timeout=60)
    _release(bad)
    no_args = celery_app.send_task(EMBED_TASK, args=[], queue=QUEUE)
    with pytest.raises(PayloadError, match="no readable embed request"):
        no_args.get(timeout=60)
    _release(no_args)
    assert client.embed(["still serving"], "fast", timeout=60).shape == (1, 64)


def test_a_pickled_message_is_refused_at_once_and_never_run(client, celery_app):
    evil = celery_app.send_task(EMBED_TASK, args=[{"v": 1}], queue=QUEUE, serializer="pickle")
    with pytest.raises(PayloadError, match="refused: embedq accepts only"):
        evil.get(timeout=60)  # a typed refusal, not a timeout
    _release(evil)
    assert client.embed(["after pickle"], "fast", timeout=60).shape == (1, 64)


def test_plain_celery_worker_command_serves_the_queue(hashing_config):
    with RedisServer() as own:  # no other worker listens here
        env = worker_env(own.url, hashing_config)
        worker = WorkerProcess(
            [sys.executable, "-m", "celery", "-A", "embedq.worker.celery_app", "worker",
             "-Q", "embed.hashing.fp32", "-P", "solo", "--without-gossip", "--without-mingle"],
            env)
        try:
            with make_client(own.url, hashing_config) as client:
                result = client.embed_detailed(["via celery's own cli"], "fast", timeout=60)
            assert result.model == ["hashing"]
        finally:
            worker.stop()


def test_cli_embed_writes_npy(client, redis_server, hashing_config, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("first line\nsecond line\n\nthird line\n")
    out = tmp_path / "vectors.npy"
    run = subprocess.run(
        [sys.executable, "-m", "embedq.cli", "embed", "--use-case", "fast", "--input",
         str(source), "--output", str(out)],
        env=worker_env(redis_server.url, hashing_config), capture_output=True, text=True,
        timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    vectors = np.load(out)
    np.testing.assert_allclose(
        vectors, _expected(hashing_config, ["first line", "second line", "third line"]),
        rtol=1e-6, atol=1e-7)


def test_each_request_is_a_task_event_for_flower(client, celery_app):
    def complete(seen: dict[str, list[dict]]) -> bool:
        return any({"task-sent", "task-received", "task-succeeded"} <= {e["type"] for e in got}
                   for got in seen.values())

    with task_events(celery_app) as seen:
        client.embed(["seen by flower"], "fast", timeout=60)
        wait_until(lambda: complete(seen), timeout=30)
    # task-sent travels with the worker's batch events, stamped as the producer pushed it
    events = next({e["type"]: e for e in got} for got in seen.values()
                  if {"task-sent", "task-received"} <= {e["type"] for e in got})
    sent, received = events["task-sent"], events["task-received"]
    assert sent["timestamp"] <= received["timestamp"]
    assert sent["hostname"] != received["hostname"]  # the producer's name, not the worker's
    assert sent["name"] == received["name"]
    assert sent["queue"] == QUEUE


def test_embed_many_window_follows_the_live_consumers(client):
    client.embed(["the worker is up"], "fast", timeout=60)
    assert client.live_workers([QUEUE, "embed.nobody.fp32"]) == [2, 0]
