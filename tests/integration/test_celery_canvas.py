"""embed as a Celery task, end to end: a user's own Celery app (examples/celery_user_app.py) and
its plain Celery worker, a real embedq worker on the hashing model, a real Redis. Every test
runs with the user's app on JSON (Celery's default) and on msgpack."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import redis
from celery.exceptions import TaskRevokedError

from embedq.config.errors import (
    InvalidInputError,
    InvalidTextError,
    PayloadError,
    UnknownUseCaseError,
)
from embedq.tasks import EMBED_TASK, embed, vectors_of
from embedq.worker.celery_control import REVOKED_KEY
from tests.integration.celery_user import load_user_app, start_user_worker
from tests.support import (
    WorkerProcess,
    expected_hashing,
    wait_for_consumers,
    wait_until,
    worker_env,
)

# The example app is loaded twice in this process (JSON, msgpack); Celery shares each app's
# tasks with every app by name, so the second load names the first one's tasks again.
pytestmark = pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")
QUEUE = "embed.hashing.fp32"
DOCS = [f"document {n} about subject {n % 7}" for n in range(20)]


@pytest.fixture(scope="module")
def embed_worker(redis_server, start_worker, hashing_config):
    # Texts over 1,000 characters pass a user's checks (100,000) and fail on this worker.
    worker = start_worker("hashing", "fp32", hashing_config, "-c", "1",
                          EMBEDQ_TASK_TRACK_STARTED="1", EMBEDQ_MAX_TEXT_CHARS="1000")
    wait_for_consumers(redis_server.url, QUEUE)
    return worker


@pytest.fixture(scope="module", params=["json", "msgpack"])
def user(request, redis_server, embed_worker, hashing_config):
    module = load_user_app(redis_server.url, request.param, hashing_config)
    worker = start_user_worker(redis_server.url, request.param, hashing_config, module)
    yield module
    worker.stop()


@pytest.fixture
def app(user):
    user.app.set_current()  # `embed` binds to the current app, as in a user's process
    return user.app


def _close(*results) -> None:
    for result in results:
        result.backend.remove_pending_result(result)


def _same(got, texts, config) -> None:
    """Row by row the vectors of ``texts`` (a cache hit is stored as float16, so cosine)."""
    want = expected_hashing(config, texts)
    assert got.shape == want.shape
    cosine = np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.9999, cosine


def test_delay_routes_by_use_case_and_returns_a_plain_result(app, hashing_config):
    result = embed.delay(["red shoes", "blue shoes"], use_case="fast")
    value = result.get(timeout=60)
    assert value["shape"] == [2, 64]
    assert value["model"] == "hashing"
    assert isinstance(value["vectors"], list if app.conf.result_serializer == "json" else bytes)
    _same(vectors_of(value), ["red shoes", "blue shoes"], hashing_config)
    assert result.state == "SUCCESS"
    _close(result)


def test_a_celery_app_without_embedq_reads_the_result(app, redis_server):
    import subprocess

    result = embed.delay(["read elsewhere"], use_case="fast")
    result.get(timeout=60)
    serializer = app.conf.result_serializer
    code = (
        "import sys, zstandard, numpy as np; from celery import Celery; "
        f"app = Celery('reader', backend={redis_server.url!r}); "
        f"app.conf.result_serializer = {serializer!r}; "
        "app.conf.result_accept_content = ['json', 'msgpack']; "
        f"r = app.AsyncResult({result.id!r}).get(timeout=30); "
        "v = r['vectors']; "
        "v = np.frombuffer(zstandard.ZstdDecompressor().decompress(v), r['dtype']) "
        "if isinstance(v, bytes) else np.asarray(v, r['dtype']); "
        "assert not any(m.startswith('embedq') for m in sys.modules); "
        "print(v.reshape(r['shape']).shape)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False, cwd="/")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(1, 64)"
    _close(result)


def test_chain_into_a_user_task(user, app, hashing_config):
    result = user.pipeline(["a chained text"], use_case="fast")
    stored = result.get(timeout=60)
    assert stored["rows"] == 1
    assert stored["model"] == "hashing"
    _same(np.array(stored["vectors"], dtype=np.float32), ["a chained text"], hashing_config)
    _close(result)


def test_link_sends_the_result_on_and_is_a_child(user, app):
    result = embed.s(["linked"], use_case="fast").apply_async(link=user.store.s())
    result.get(timeout=60)
    assert result.children, "the stored result lists the linked task, as Celery's does"
    child = result.children[0]
    assert child.get(timeout=60)["rows"] == 1
    _close(result, child)


def test_a_worker_refusal_is_a_typed_celery_failure_and_calls_link_error(user, app):
    sent = app.send_task(EMBED_TASK, args=[["some text"]], kwargs={"use_case": "nope"},
                         queue=QUEUE, link_error=user.failed.s())
    with pytest.raises(UnknownUseCaseError, match="unknown use case 'nope'; known: fast, half"):
        sent.get(timeout=60)
    assert sent.state == "FAILURE"
    assert "UnknownUseCaseError" in sent.traceback
    assert "embedq worker" in sent.traceback
    with redis.Redis.from_url(app.conf.broker_url) as client:
        wait_until(lambda: client.exists(f"userapp:failed:{sent.id}") == 1, timeout=30)
    _close(sent)


def test_a_failure_in_a_chain_fails_the_rest_and_runs_on_error(user, app):
    from celery import chain

    failing = chain(embed.s(["fine", "word " * 300], use_case="fast"),
                    user.store.s()).on_error(user.failed.s())
    result = failing.apply_async()
    with pytest.raises(InvalidTextError, match="text #1: has 1,500 characters") as raised:
        result.get(timeout=60)  # the store step is failed too, as Celery does
    assert raised.value.index == 1  # rebuilt from its constructor's arguments
    first = result.parent
    with redis.Redis.from_url(app.conf.broker_url) as client:
        wait_until(lambda: client.exists(f"userapp:failed:{first.id}") == 1, timeout=30)
    _close(result, first)


def test_a_callback_celery_cannot_send_fails_the_task_and_the_worker_serves_on(app):
    from celery import signature

    bad = signature({"task": "userapp.store", "args": 5, "kwargs": {}, "options": {},
                     "subtask_type": None, "immutable": False}, app=app)
    sent = app.send_task(EMBED_TASK, args=[["with a broken link"]],
                         kwargs={"use_case": "fast"}, queue=QUEUE, link=bad)
    with pytest.raises(TypeError):  # Celery's own error for the signature's args
        sent.get(timeout=60)
    assert sent.state == "FAILURE"
    fine = embed.delay(["still serving"], use_case="fast")
    assert fine.get(timeout=60)["shape"] == [1, 64]
    _close(sent, fine)


def test_group_of_twenty_keeps_order(user, app, hashing_config):
    result = user.embed_each(DOCS, use_case="fast")
    values = result.get(timeout=60)
    assert len(values) == 20
    _same(vectors_of(values), DOCS, hashing_config)
    _close(*result.results)


def test_chord_of_twenty_into_a_user_callback(user, app, hashing_config):
    result = user.batch_of_many(DOCS, use_case="fast")
    rows = result.get(timeout=90)
    _same(np.array(rows, dtype=np.float32), DOCS, hashing_config)
    _close(result)


def test_revoked_before_compute_is_skipped_and_revoked(app):
    task_id = f"revoked-{app.conf.task_serializer}"
    app.control.revoke(task_id)
    with redis.Redis.from_url(app.conf.broker_url) as client:  # the embed worker recorded it
        wait_until(lambda: client.zscore(REVOKED_KEY, task_id) is not None, timeout=30)
    result = embed.s(["never computed"], use_case="fast").apply_async(task_id=task_id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=60)
    assert result.state == "REVOKED"
    _close(result)


def test_an_expired_message_is_revoked_not_computed(app):
    result = embed.s(["too late"], use_case="fast").apply_async(
        expires=datetime.now(UTC) - timedelta(seconds=5))
    with pytest.raises(TaskRevokedError, match="expired"):
        result.get(timeout=60)
    assert result.state == "REVOKED"
    _close(result)


def test_eta_is_refused_at_the_call_and_by_the_worker(app):
    with pytest.raises(InvalidInputError, match="no eta or countdown"):
        embed.s(["later"], use_case="fast").apply_async(countdown=30)
    sent = app.send_task(EMBED_TASK, args=[["later"]], kwargs={"use_case": "fast"},
                         queue=QUEUE, countdown=30)
    with pytest.raises(PayloadError, match="eta"):
        sent.get(timeout=60)
    _close(sent)


def test_a_call_naming_a_model_is_refused_before_sending(app):
    with pytest.raises(InvalidInputError, match="unknown argument"):
        embed.delay(["x"], use_case="fast", model="/etc/passwd")


@pytest.mark.parametrize(("command", "option", "advice"), [
    (["celery", "-A", "embedq.worker.celery_app", "worker", "-Q", QUEUE], "--autoscale=4,1",
     "start more workers of the queue"),
    (["embedq.cli", "worker", "-m", "hashing", "-p", "fp32"], "--max-tasks-per-child=10",
     "rolling restart"),
    (["embedq.cli", "worker", "-m", "hashing", "-p", "fp32"], "--max-memory-per-child=100000",
     "EMBEDQ_CACHE_MEMORY_BYTES"),
])
def test_scaling_options_that_cannot_work_stop_the_start(redis_server, hashing_config, command,
                                                         option, advice):
    worker = WorkerProcess([sys.executable, "-m", *command, option, "--without-gossip",
                            "--without-mingle"], worker_env(redis_server.url, hashing_config))
    assert worker.process.wait(timeout=120) != 0
    assert advice in worker.stop()
