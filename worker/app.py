"""The worker's Celery app: Celery runs the processes, embedq's consumers run the queues.

A standard Celery worker (``embedq worker`` or ``celery -A embedq.worker.celery_app worker -Q
embed.<model>.<precision>``) hosts the service: Celery forks and supervises the pool processes,
answers remote control (ping, inspect, shutdown), sends worker heartbeats to Flower and gives the
familiar command line. The embed queues themselves are consumed by embedq's own consumer in each
pool process (`worker.consumer`, `worker.claims`): right after Celery reads its ``-Q`` queues,
they are taken out of Celery's consumer, which then consumes nothing and so can never pop a
message unsafely or die on garbage. ``inspect active_queues`` still lists them, so Flower's
Broker page shows every queue this worker serves.
"""

from __future__ import annotations

import os
from typing import Any

import redis
import structlog
from celery import Celery, signals
from celery.worker.control import inspect_command
from kombu.entity import Queue

from embedq.config.logs import configure_logging
from embedq.config.registry import Registry
from embedq.config.settings import Settings
from embedq.tasks.app import create_app
from embedq.tasks.connections import redis_client
from embedq.worker import metrics
from embedq.worker.celery_control import install_revoke_recorder, refuse_scaling_options
from embedq.worker.celery_inspect import install_active
from embedq.worker.runtime import WorkerRuntime

log = structlog.get_logger(__name__)
_served: list[str] = []  # this process's embed queues, for `inspect active_queues`
_clients: list[redis.Redis] = []  # the parent's broker client, once a control command needs it


@inspect_command()
def active_queues(state: Any) -> list[dict[str, Any]]:
    """The embed queues this worker consumes (Celery's own version would list none)."""
    queues = [Queue(name, routing_key=name) for name in _served]  # type: ignore[no-untyped-call]
    return [dict(queue.as_dict(recurse=True)) for queue in queues]  # type: ignore[no-untyped-call]


def _broker(settings: Settings) -> redis.Redis:
    """The parent's broker client for revokes and ``inspect active`` (made on first use)."""
    if not _clients:
        _clients.append(redis_client(settings.broker, master_name=settings.sentinel_master,
                                     socket_timeout=5.0))
    return _clients[0]


def _is_prefork(worker: Any) -> bool:
    return "prefork" in getattr(worker.pool_cls, "__module__", str(worker.pool_cls))


def create_worker_app(settings: Settings, registry: Registry) -> Celery:
    """The Celery app a worker runs: embed queues served by embedq's consumers."""
    configure_logging(settings.log_level, settings.log_format)
    metrics.prepare(settings)
    app = create_app(settings)
    app.conf.update(worker_proc_alive_timeout=120.0,
                    task_track_started=settings.task_track_started)
    install_revoke_recorder(lambda: _broker(settings))
    install_active(_served, lambda: _broker(settings))
    runtime = WorkerRuntime(registry, settings)
    signals.worker_shutting_down.connect(runtime.halt, weak=False)  # at SIGTERM, in the parent
    forks: list[bool] = []
    exporters: list[metrics.Exporter] = []  # the parent's /metrics, advertised for the dashboard

    @signals.celeryd_after_setup.connect(weak=False)
    def _plan(sender: str, instance: Any, **_: Any) -> None:
        refuse_scaling_options(instance)
        queues = instance.app.amqp.queues
        names = list(queues.consume_from or {})
        queues.deselect(names)  # Celery's consumer reads none of them; embedq's consumers do
        _served[:] = names
        forks.append(_is_prefork(instance))
        processes = int(instance.concurrency or 1) if forks[0] else 1
        runtime.plan(names, sender, processes, instance.app)

    @signals.worker_process_init.connect(weak=False)
    def _start_process(**_: Any) -> None:
        if os.getpid() != runtime.main_pid:  # a forked pool process (the solo pool sends this
            runtime.start()  # signal too, from the main process, before the queues are known)

    @signals.worker_process_shutdown.connect(weak=False)
    def _stop_process(**_: Any) -> None:
        runtime.stop()

    @signals.worker_ready.connect(weak=False)
    def _ready(**_: Any) -> None:
        runtime.ready.set()
        if settings.metrics_port is not None:
            exporter = metrics.Exporter(settings, list(_served))
            exporters.append(exporter)
            log.info("metrics_exporter", url=exporter.start(settings.metrics_port))
        if forks and not forks[0]:
            runtime.start()  # solo and threads pools never fork: serve from this process

    @signals.worker_shutdown.connect(weak=False)
    def _shutdown(**_: Any) -> None:
        runtime.stop()
        for exporter in exporters:
            exporter.stop()

    return app
