"""The Celery app factory: the worker's app, Flower's, and any plain Celery producer's.

Built from a `Settings` object at process start, never configured at import. The wire is msgpack
(vectors as bytes) with JSON still accepted for hand-written messages; pickle is never accepted,
so a message cannot execute code on a worker. embedq's own producer and consumers move messages
with their own Redis commands (`tasks.envelope`, `worker.claims`) in this same format, so a
message sent with ``app.send_task`` is served like any other and its result lands in the Celery
result backend configured here.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from embedq.config.settings import Settings
from embedq.tasks.connections import sentinel_master, sentinel_tls, without_master_name
from embedq.tasks.tls import tls_options, without_tls_parameters

ACCEPT_CONTENT = ["msgpack", "json"]


def _transport_options(settings: Settings, url: str) -> dict[str, Any]:
    """kombu's options for a ``sentinel://`` URL: the master to follow (the URL's own
    ``?master_name=``, else ``EMBEDQ_SENTINEL_MASTER``) and, when the URL asks for TLS, the
    TLS options for the sentinels themselves (the master's are ``broker_use_ssl``)."""
    tls = sentinel_tls(url) if url.startswith("sentinel://") else {}
    return {"master_name": sentinel_master(url, settings.sentinel_master),
            **({"sentinel_kwargs": tls} if tls else {})}


def create_app(settings: Settings, *, name: str = "embedq") -> Celery:
    """A Celery app wired to the settings' broker and result backend."""
    app = Celery(name, broker=without_tls_parameters(without_master_name(settings.broker)),
                 backend=without_tls_parameters(without_master_name(settings.result_backend)))
    app.conf.update(
        task_serializer="msgpack",
        result_serializer="msgpack",
        accept_content=ACCEPT_CONTENT,
        result_accept_content=ACCEPT_CONTENT,
        # No task_acks_late / task_reject_on_worker_lost: they govern messages Celery's own
        # consumer takes, and a worker's Celery consumer takes none (worker.app deselects every
        # -Q queue; embedq registers no Celery task). A message stays safe until answered
        # because worker.claims moves it to an in-flight list and the reply removes it.
        result_expires=settings.result_expires_s,
        result_extended=False,
        task_send_sent_event=True,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings, settings.broker),
        result_backend_transport_options={"retry_policy": {"timeout": 5.0},
                                          **_transport_options(settings, settings.result_backend)},
        # Every TLS option here, none in the URLs: kombu, the result backend and Flower each
        # read these the same way (`embedq.tasks.tls`).
        broker_use_ssl=tls_options(settings.broker),
        redis_backend_use_ssl=tls_options(settings.result_backend),
    )
    return app
