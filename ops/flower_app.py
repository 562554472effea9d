"""The app Flower loads: ``celery -A embedq.ops.flower_app flower``.

Stock Flower 2.x lists on its Broker page the queues its workers reported in ``active_queues``
and, only when no worker has answered yet, the app's ``task_queues``; for a Redis broker it
shows a list length and nothing else. So a route whose worker is down (exactly the queue an
operator needs to see) can be missing, and in-flight messages and consumers are blank. This
module gives Flower every route's queue in ``task_queues`` and extends its broker view so the
queue names are the union of both sources and each embed queue's row carries embedq's own
figures (waiting, in flight, consumers) from `queue_stats`. Importing it *is* Flower's process
start, like ``embedq.worker.celery_app`` for a worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from celery import Celery
from kombu.entity import Queue

from embedq.config.errors import ConfigError
from embedq.config.registry import load_registry
from embedq.config.settings import Settings, load_settings
from embedq.ops.stack import queues_of
from embedq.tasks.app import create_app
from embedq.tasks.brokers import broker_clients, read_all
from embedq.tasks.queue_stats import QueueStats, queue_stats
from embedq.tasks.tls import check_settings_tls


def flower_rows(stats: list[QueueStats]) -> list[dict[str, Any]]:
    """Broker-page rows in the shape Flower's RabbitMQ view fills (its template reads these)."""
    return [{"name": s.queue, "messages": s.depth + s.unacked, "messages_ready": s.depth,
             "messages_unacknowledged": s.unacked, "consumers": s.consumers} for s in stats]


def extend_broker_view(route_queues: list[str], read: Callable[[], list[QueueStats]]) -> None:
    """Make Flower's Broker page list ``route_queues`` always, with embedq's figures."""
    try:
        from flower.views import BaseHandler
    except ImportError as e:  # pragma: no cover - flower is in the worker extra
        raise ConfigError("Flower is not installed: pip install 'embedq[worker]'") from e
    if not (hasattr(BaseHandler, "get_active_queue_names") and hasattr(BaseHandler, "get_broker")):
        raise ConfigError("this Flower version has no broker view embedq can extend; "
                          "embedq supports flower>=2.0,<3")
    worker_names = BaseHandler.get_active_queue_names
    broker_of = BaseHandler.get_broker

    def get_active_queue_names(handler: Any) -> list[str]:
        return sorted(set(worker_names(handler)) | set(route_queues))

    class EmbedqBroker:
        """Flower's broker for other queues, embedq's figures for the embed queues."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def queues(self, names: list[str]) -> list[dict[str, Any]]:
            ours = await asyncio.get_running_loop().run_in_executor(None, read)
            known = {row["name"]: row for row in flower_rows(ours)}
            others = [name for name in names if name not in known]
            rows = await self.inner.queues(others) if others else []
            return sorted([*rows, *(known[n] for n in names if n in known)],
                          key=lambda row: row["name"])

    def get_broker(handler: Any) -> EmbedqBroker:
        return EmbedqBroker(broker_of(handler))

    BaseHandler.get_active_queue_names = get_active_queue_names
    BaseHandler.get_broker = get_broker


def create_flower_app(settings: Settings) -> Celery:
    """The Celery app Flower inspects, with every route's queue declared."""
    registry = load_registry(settings.config_dir)
    queues = queues_of(registry)
    app = create_app(settings, name="embedq-flower")
    app.conf.task_queues = [Queue(name) for name in queues]  # type: ignore[no-untyped-call]
    check_settings_tls(settings)  # a wrong CA: one clear error, not a page that hangs
    groups = broker_clients(registry, settings, queues, socket_timeout=5.0)
    extend_broker_view(queues, lambda: read_all(groups, queue_stats))  # every route's broker
    return app


app = create_flower_app(load_settings())
