"""The queue path end to end on the hashing model: ordering, bad messages, Celery's own CLI."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading

import numpy as np
import pytest
from celery.result import AsyncResult

from embedq.config import PayloadError, load_registry
from embedq.ops.redis_server import RedisServer
from embedq.producer.client import release_result
from embedq.tasks import EMBED_TASK
from embedq.worker.embedder import postprocess
from embedq.worker.models.hashing_encoder import HashingEncoder
from tests.support import WorkerProcess, make_client, worker_env


@pytest.fixture(scope="module")
def client(redis_server, start_worker, hashing_config):
    start_worker("hashing", "fp32", hashing_config, "-c", "2")
    return make_client(redis_server.url, hashing_config)


def _expected(config, texts: list[str]) -> np.ndarray:
    spec = load_registry(config).model("hashing")
    raw = HashingEncoder(spec, spec.source).encode_batch(texts)
    return postprocess(raw, dim=spec.dim, normalize=True, output_dtype="float32")


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


def test_a_malformed_message_fails_alone(client):
    bad = client.app.send_task(EMBED_TASK, args=["not a request"], queue="embed.hashing.fp32")
    with pytest.raises(PayloadError, match="embed request must be a map"):
        bad.get(timeout=60)
    release_result(bad)
    no_args = client.app.send_task(EMBED_TASK, args=[], queue="embed.hashing.fp32")
    with pytest.raises(PayloadError, match="no embed request"):
        no_args.get(timeout=60)
    release_result(no_args)
    assert client.embed(["still serving"], "fast", timeout=60).shape == (1, 64)


def test_a_pickled_message_is_refused_and_the_worker_lives(client, redis_server, hashing_config):
    evil = client.app.send_task(EMBED_TASK, args=[{"v": 1}], queue="embed.hashing.fp32",
                                serializer="pickle")
    assert client.embed(["after pickle"], "fast", timeout=60).shape == (1, 64)
    assert AsyncResult(evil.id, app=client.app).state == "PENDING"  # never executed


def test_plain_celery_worker_command_serves_the_queue(hashing_config):
    with RedisServer() as own:  # no other worker listens here
        env = worker_env(own.url, hashing_config)
        worker = WorkerProcess(
            [sys.executable, "-m", "celery", "-A", "embedq.worker.celery_app", "worker",
             "-Q", "embed.hashing.fp32", "-P", "solo", "--without-gossip", "--without-mingle"],
            env)
        try:
            client = make_client(own.url, hashing_config)
            result = client.embed_detailed(["via celery's own cli"], "fast", timeout=60)
            assert result.model == ["hashing"]
            del client
            gc.collect()
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


def test_each_request_is_a_task_event_for_flower(client):
    seen: dict[str, str] = {}
    changed = threading.Condition()
    listening = threading.Event()

    def on_event(event: dict) -> None:
        if event["type"] == "worker-heartbeat":
            listening.set()  # the receiver's queue exists: events from now on reach us
        elif "uuid" in event:
            with changed:
                seen[event["uuid"]] = event["type"]
                changed.notify_all()

    with client.app.connection_for_read() as connection:
        receiver = client.app.events.Receiver(connection, handlers={"*": on_event})
        thread = threading.Thread(
            target=lambda: receiver.capture(limit=None, timeout=60, wakeup=True), daemon=True)
        thread.start()
        assert listening.wait(60)
        job = client.submit(["first", "second"], "fast", chunk_size=1)
        job.get(timeout=60)
        with changed:
            assert changed.wait_for(
                lambda: all(seen.get(i) == "task-succeeded" for i in job.ids), 30), seen
        receiver.should_stop = True
        thread.join(timeout=10)


def test_embed_many_window_follows_the_live_workers(client):
    client.embed(["the worker is up"], "fast", timeout=60)
    assert client._live_workers(["embed.hashing.fp32", "embed.nobody.fp32"]) == [1, 0]
