"""The Celery app factory shared by producers and workers.

Built from a `Settings` object at process start, never configured at import. The wire is msgpack
(vectors as bytes) with JSON still accepted for hand-written messages; pickle is never accepted,
so a message cannot execute code on a worker. Acks are late and a lost worker's messages are
rejected back onto the queue, so a crash redelivers rather than drops a job.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlparse

from celery import Celery

from embedq.config.settings import Settings

ACCEPT_CONTENT = ["msgpack", "json"]


def _ssl_options(url: str) -> dict[str, Any] | None:
    """TLS options for a ``rediss://`` URL that does not spell them out itself.

    Celery refuses a ``rediss://`` URL without ``ssl_cert_reqs``; the safe default (verify the
    server against the system CAs) is what a user of ``rediss://`` expects.
    """
    parsed = urlparse(url)
    if parsed.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parsed.query):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def _broker_options(visibility_timeout: int) -> dict[str, Any]:
    """Redelivery of a dead worker's unacknowledged messages after ``visibility_timeout``.

    kombu sweeps for such messages every ``interval x throttle`` seconds (100 s by default);
    with a short visibility timeout the sweep must keep pace, or a crash costs minutes.
    """
    interval = max(1, min(10, visibility_timeout // 3))
    return {
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": interval,
        "unacked_restore_throttle": 1 if visibility_timeout < 600 else 10,
    }


def create_app(settings: Settings, *, name: str = "embedq") -> Celery:
    """A Celery app wired to the settings' broker and result backend."""
    app = Celery(name, broker=settings.broker, backend=settings.result_backend)
    app.conf.update(
        task_serializer="msgpack",
        result_serializer="msgpack",
        accept_content=ACCEPT_CONTENT,
        result_accept_content=ACCEPT_CONTENT,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        result_expires=settings.result_expires_s,
        result_extended=False,
        task_send_sent_event=True,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_broker_options(settings.visibility_timeout_s),
        result_backend_transport_options={"retry_policy": {"timeout": 5.0}},
        broker_use_ssl=_ssl_options(settings.broker),
        redis_backend_use_ssl=_ssl_options(settings.result_backend),
    )
    return app
