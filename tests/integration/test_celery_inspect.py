"""What Celery's tools see of an embed task while it computes: ``STARTED`` (with
``task_track_started``), ``celery inspect active``, Flower's task events with a runtime."""

from __future__ import annotations

import pytest

from embedq.config.settings import Settings
from embedq.tasks import EMBED_TASK
from embedq.tasks.app import create_app
from tests.support import HASHING_MODEL, task_events, wait_for_consumers, wait_until, write_config

QUEUE = "embed.slow.fp32"


@pytest.fixture(scope="module")
def app(redis_server, start_worker, tmp_path_factory):
    slow = {**HASHING_MODEL, "source": {"kind": "hashing", "delay_ms": 1500}}
    config = write_config(tmp_path_factory.mktemp("slow-config"), {"slow": slow},
                          {"slow": {"model": "slow", "precision": "fp32"}}, default="slow")
    start_worker("slow", "fp32", config, "-c", "1", "-n", "slow@test",
                 EMBEDQ_TASK_TRACK_STARTED="true")
    wait_for_consumers(redis_server.url, QUEUE)
    return create_app(Settings(redis_url=redis_server.url))


def test_a_computing_task_is_started_active_and_seen_by_flower(app):
    with task_events(app) as seen:
        sent = app.send_task(EMBED_TASK, args=[["slow text"]], kwargs={"use_case": "slow"},
                             queue=QUEUE)
        wait_until(lambda: sent.state == "STARTED", timeout=30)
        active = app.control.inspect(destination=["slow@test"], timeout=2).active()
        assert [task["id"] for task in active["slow@test"]] == [sent.id]
        assert active["slow@test"][0]["name"] == EMBED_TASK
        sent.get(timeout=30)
        wait_until(lambda: "task-succeeded" in {e["type"] for e in seen.get(sent.id, [])}, 30)
    kinds = {event["type"]: event for event in seen[sent.id]}
    assert {"task-received", "task-started", "task-succeeded"} <= set(kinds)
    assert kinds["task-received"]["name"] == EMBED_TASK
    assert kinds["task-succeeded"]["runtime"] >= 1.0
    sent.backend.remove_pending_result(sent)


def test_a_task_that_would_finish_after_its_expires_is_revoked_not_computed(app):
    from datetime import UTC, datetime, timedelta

    from celery.exceptions import TaskRevokedError

    warm = app.send_task(EMBED_TASK, args=[["measures the pass"]], kwargs={"use_case": "slow"},
                         queue=QUEUE)
    warm.get(timeout=30)  # the worker now expects a pass of about 1.5 s
    late = app.send_task(EMBED_TASK, args=[["cannot make it"]], kwargs={"use_case": "slow"},
                         queue=QUEUE, expires=datetime.now(UTC) + timedelta(seconds=0.8))
    with pytest.raises(TaskRevokedError, match="expired"):
        late.get(timeout=30)
    assert late.state == "REVOKED"
    for result in (warm, late):
        result.backend.remove_pending_result(result)
