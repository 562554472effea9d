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
from embedq.config.settings import Settings, load_settings
from embedq.tasks.brokers import settings_for_queues
from embedq.tasks.names import queue_name
from embedq.tasks.tls import check_settings_tls


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


def _queue_broker(settings: Settings, queue: str) -> Settings:
    """The settings of ``queue``'s broker, also put in this process's environment, so that
    Celery's app (remote control, events, Flower's view of this worker) and every embedq client
    of the worker use the one broker of its queue and never another route's."""
    try:
        own = settings_for_queues(load_registry(settings.config_dir), settings, [queue])
    except EmbedqError as exc:
        raise click.ClickException(str(exc)) from exc
    for key, value in (("EMBEDQ_BROKER_URL", own.broker_url), ("EMBEDQ_CACHE_URL", own.cache_url)):
        if value is not None:
            os.environ[key] = value
    return own


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--model", "-m", required=True, help="Model name from models.json.")
@click.option("--precision", "-p", default="fp32", show_default=True,
              help="Weight precision: fp32, fp16, bf16, int8, auto.")
@click.option("--concurrency", "-c", type=int, default=None,
              help="Pool processes (default: one per core).")
@click.option("--pool", "-P", default="prefork", show_default=True,
              type=click.Choice(["prefork", "solo", "threads"]))
@click.option("--threads", type=int, default=None, help="torch threads per pool process.")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    model: str,
    precision: str,
    concurrency: int | None,
    pool: str,
    threads: int | None,
    loglevel: str,
    celery_args: tuple[str, ...],
) -> None:
    """Run a Celery worker for one model at one precision (extra args go to Celery).

    The model and precision are checked (and a split zip assembled or an int8 model exported)
    before Celery starts, so a worker that cannot serve stops here with the fix in the message.
    """
    from embedq.worker import metrics
    from embedq.worker.celery_control import REFUSED
    from embedq.worker.models.loading import check_model

    if threads is not None:
        os.environ["EMBEDQ_TORCH_THREADS"] = str(threads)
    settings = _queue_broker(load_settings(), queue_name(model, precision))
    metrics.prepare(settings)  # before check_model: a fallback it counts must reach /metrics
    try:
        check_settings_tls(settings)  # a wrong CA or host name: one clear error, at start
        check_model(load_registry(settings.config_dir), model, precision, settings)
    except EmbedqError as exc:
        raise click.ClickException(str(exc)) from exc
    from embedq.worker.celery_app import app

    processes = 1 if pool == "solo" else concurrency or os.cpu_count() or 1
    app.worker_main(worker_argv(model, precision, concurrency=processes, pool=pool,
                                loglevel=loglevel, extra=list(celery_args)))
    if REFUSED:  # Celery's worker_main swallows the exit status of a refused start
        raise click.ClickException(REFUSED[0])
