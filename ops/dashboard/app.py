"""Wiring the dashboard from settings: where its figures come from, and the serving loop."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import redis
import structlog

from embedq.config.registry import Registry, load_registry
from embedq.config.settings import Settings
from embedq.config.urls import safe_url
from embedq.ops.dashboard.exporter import queue_registry
from embedq.ops.dashboard.sampler import Sampler, Sources
from embedq.ops.dashboard.scrape import Totals, worker_totals
from embedq.ops.dashboard.server import make_server
from embedq.ops.dashboard.texts_gauge import texts_reader
from embedq.ops.evaluation.results import latest
from embedq.ops.stack import queues_of
from embedq.tasks.brokers import broker_clients, read_all
from embedq.tasks.connections import redis_client
from embedq.tasks.names import route_queue
from embedq.tasks.queue_stats import queue_stats
from embedq.tasks.tls import check_settings_tls

log = structlog.get_logger(__name__)
METRIC_KEYS = ("spearman", "pearson", "ndcg_at_10", "mrr_at_10", "recall_at_100", "v_measure")


def routes_by_queue(registry: Registry) -> dict[str, list[str]]:
    """Each queue and the routes that send to it (fallback models included)."""
    found: dict[str, list[str]] = {}
    for name, route in registry.routes.items():
        for model in route.chain:
            found.setdefault(route_queue(route.served_by(model)), []).append(name)
    return found


def _evaluation(client: redis.Redis) -> list[dict[str, Any]]:
    return [{**doc, "metrics": {k: doc[k] for k in METRIC_KEYS if k in doc}}
            for doc in latest(client)]


def build_sources(settings: Settings, registry: Registry) -> Sources:
    """Figures from the broker Redis (each route's) and the workers' exporters; never from a
    model. Workers advertise their ``/metrics`` on their queue's broker, so every broker is
    asked; evaluation results live on the default broker."""
    groups = broker_clients(registry, settings, queues_of(registry), socket_timeout=2.0)
    default = redis_client(settings.broker, master_name=settings.sentinel_master,
                           socket_timeout=2.0)

    def totals() -> dict[str, dict[str, Totals]]:
        return {url: found for _, client, _ in groups
                for url, found in worker_totals(client).items()}

    return Sources(queue_stats=lambda: read_all(groups, queue_stats),
                   worker_totals=totals,
                   evaluation=lambda: _evaluation(default),
                   routes_of=routes_by_queue(registry),
                   brokers_of={q: safe_url(own.broker) for own, _, queues in groups
                               for q in queues})


def serve_forever(settings: Settings, host: str, port: int,
                  announce: Callable[[str], None]) -> None:
    """Serve until SIGINT/SIGTERM."""
    check_settings_tls(settings)  # a wrong CA or host name: one clear error, at start
    registry = load_registry(settings.config_dir)
    sources = build_sources(settings, registry)
    sampler = Sampler(sources)
    groups = broker_clients(registry, settings, queues_of(registry), socket_timeout=2.0)

    def texts() -> list[tuple[str, int]]:
        return read_all(groups, lambda client, queues: texts_reader(client, queues)())

    server = make_server(host, port, sampler, queue_registry(sources.queue_stats, texts),
                         settings.dashboard_user, settings.dashboard_password)

    def _stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sampler.start()
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    announce(f"dashboard: http://{bound_host}:{bound_port}/")
    log.info("dashboard_started", host=bound_host, port=bound_port)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        sampler.stop()
        server.server_close()
