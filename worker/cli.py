"""``embedq worker``: a standard Celery worker bound to one model's queue.

It only assembles Celery's own command line (queue, pool, concurrency, node name, events), so
every Celery worker option still works and a plain ``celery -A embedq.worker.celery_app worker
-Q embed.<model>.<precision>`` is the same worker.
"""

from __future__ import annotations

import os

import click

from embedq.config.errors import EmbedqError
from embedq.config.registry import load_registry
from embedq.config.settings import load_settings
from embedq.tasks.names import queue_name
from embedq.worker.pool import check_model


def worker_argv(
    model: str, precision: str, *, concurrency: int, pool: str, loglevel: str, extra: list[str]
) -> list[str]:
    """Celery's worker arguments for one model queue."""
    return [
        "worker",
        "--queues", queue_name(model, precision),
        "--pool", pool,
        "--concurrency", str(concurrency),
        "--hostname", f"{model}.{precision}.{os.getpid()}@%h",
        "--loglevel", loglevel,
        "--task-events",
        "--without-gossip",
        "--without-mingle",
        *extra,
    ]


def run_worker(
    model: str,
    precision: str,
    *,
    concurrency: int | None,
    pool: str,
    threads: int | None,
    loglevel: str,
    extra: list[str],
) -> None:
    """Check the model and precision, then hand over to Celery's worker (does not return)."""
    if threads is not None:
        os.environ["EMBEDQ_TORCH_THREADS"] = str(threads)
    settings = load_settings()
    try:
        check_model(load_registry(settings.config_dir), model, precision, settings)
    except EmbedqError as exc:
        raise click.ClickException(str(exc)) from exc
    from embedq.worker.celery_app import app

    processes = 1 if pool == "solo" else concurrency or os.cpu_count() or 1
    app.worker_main(worker_argv(model, precision, concurrency=processes, pool=pool,
                                loglevel=loglevel, extra=extra))
