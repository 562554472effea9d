"""``embedq dead-letters list|replay|drop``: what the queues could not serve, for an operator.

A message lands in its queue's dead letters when its worker process died on it too often (a
poison message), when it is not a task message at all, or when its body was refused; the record
keeps the message exactly and says why. After fixing the cause (a bigger worker, a new release)
``replay`` sends messages again; ``drop`` forgets them. Light like the producer: broker only
(each queue's: a route may name its own broker).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import click
import redis

from embedq.cli.options import json_option
from embedq.config.errors import PayloadError
from embedq.config.registry import load_registry
from embedq.config.settings import Settings, load_settings
from embedq.config.urls import safe_url
from embedq.tasks.brokers import by_broker, route_queues
from embedq.tasks.connections import redis_client
from embedq.tasks.dead_letters import count_dead, drop, list_dead, replay
from embedq.tasks.names import DEAD_NAMESPACE
from embedq.tasks.wire import DeadLetter, open_envelope

_queue_option = click.option("--queue", "-q", "queues", multiple=True,
                             help="A queue (repeatable; default: every route's queue and any "
                                  "queue that has dead letters).")


def _brokers(chosen: tuple[str, ...]) -> list[tuple[Settings, list[str]]]:
    """The queues to act on, grouped by the broker that carries them (a route may name its
    own); by default every route's queue and, on each of those brokers, any queue that has dead
    letters."""
    settings = load_settings()
    registry = load_registry(settings.config_dir)
    queues = list(chosen) or [queue for route in registry.routes.values()
                              for queue in route_queues(route)]
    return by_broker(registry, settings, dict.fromkeys(queues))


def _client(settings: Settings) -> redis.Redis:
    return redis_client(settings.broker, master_name=settings.sentinel_master,
                        socket_timeout=10.0, socket_connect_timeout=5.0)


def _with_found(client: redis.Redis, known: list[str]) -> list[str]:
    prefix = f"{DEAD_NAMESPACE}:"
    found = [key.decode()[len(prefix):] for key in client.scan_iter(match=f"{prefix}*")]
    return list(dict.fromkeys([*known, *sorted(found)]))


def _describe(record: DeadLetter) -> dict[str, Any]:
    row: dict[str, Any] = {
        "queue": record.queue,
        "at": datetime.datetime.fromtimestamp(record.at, datetime.UTC).isoformat(),
        "deliveries": record.deliveries,
        "reason": record.reason,
        "bytes": len(record.raw),
    }
    try:
        envelope = open_envelope(record.raw)
        row["task_id"] = envelope.task_id
        row["texts"] = len(envelope.request().texts)
    except PayloadError:
        pass  # garbage or a refused body: the reason says which
    return row


def _unreachable(settings: Settings, exc: Exception) -> click.ClickException:
    return click.ClickException(f"the broker Redis at {safe_url(settings.broker)} is not "
                                f"reachable ({exc}); check EMBEDQ_BROKER_URL / EMBEDQ_REDIS_URL "
                                f"and the routes' broker_url")


@click.command(name="list")
@_queue_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Newest records per queue.")
@json_option
def list_command(queues: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Show each queue's dead letters, newest first, with the reason."""
    report: dict[str, dict[str, Any]] = {}
    for settings, known in _brokers(queues):
        client = _client(settings)
        try:
            for queue in known if queues else _with_found(client, known):
                report[queue] = {"count": count_dead(client, queue),
                                 "newest": [_describe(r) for r in list_dead(client, queue, limit)]}
        except redis.RedisError as exc:
            raise _unreachable(settings, exc) from exc
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for queue, found in report.items():
        click.echo(f"{queue}: {found['count']} dead letter(s)")
        for row in found["newest"]:
            what = f"task {row['task_id']} ({row['texts']} texts)" if "texts" in row else (
                f"{row['bytes']} bytes")
            click.echo(f"  {row['at']}  {what}  deliveries={row['deliveries']}: {row['reason']}")


def _act(verb: str, queues: tuple[str, ...], limit: int | None) -> None:
    if not queues:
        raise click.UsageError(f"name the queue(s) to {verb}: --queue embed.<model>.<precision>")
    for settings, known in _brokers(queues):
        client = _client(settings)
        try:
            for queue in known:
                done = (replay(client, queue, limit if limit is not None else
                               count_dead(client, queue))
                        if verb == "replay" else drop(client, queue, limit))
                click.echo(f"{queue}: {_DONE[verb]} {done} dead letter(s)")
        except redis.RedisError as exc:
            raise _unreachable(settings, exc) from exc


_DONE = {"replay": "replayed", "drop": "dropped"}
_limit_option = click.option("--limit", type=click.IntRange(min=1), default=None,
                             help="Oldest records only (default: all).")


@click.command(name="replay")
@_queue_option
@_limit_option
def replay_command(queues: tuple[str, ...], limit: int | None) -> None:
    """Send dead-lettered messages again, oldest first, to the head of their queue."""
    _act("replay", queues, limit)


@click.command(name="drop")
@_queue_option
@_limit_option
def drop_command(queues: tuple[str, ...], limit: int | None) -> None:
    """Forget dead-lettered messages for good, oldest first."""
    _act("drop", queues, limit)


dead_letters = click.Group("dead-letters", help="See, replay or drop what the queues could "
                           "not serve.", commands=[list_command, replay_command, drop_command])
