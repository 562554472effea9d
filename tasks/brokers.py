"""Which Redis carries which queue: a route may name its own broker (and cache).

One Redis is the ceiling for every route together (see the README's capacity table); a busy route
gets its own by naming ``broker_url`` (and ``cache_url``) in ``routes.json``. Everything that
reads or writes a queue (producers, workers, the dashboard, the autoscaler, dead letters,
Kubernetes manifests) asks here, so they all agree. A route's settings are the process's
settings with that route's URLs put in, so every helper that takes `Settings` (Redis clients,
TLS options, liveness guards, the cache) follows the route unchanged.

A queue lives on exactly one broker: every route that sends to it (fallback models included)
must name the same one, or the registry is refused with both routes named.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import redis

from embedq.config.errors import ConfigError
from embedq.config.registry import Registry, RouteSpec
from embedq.config.settings import Settings
from embedq.config.urls import expand_variables, safe_url
from embedq.tasks.connections import redis_client
from embedq.tasks.names import route_queue

T = TypeVar("T")
Group = tuple[Settings, redis.Redis, list[str]]

_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://")


def _url(route: RouteSpec, key: str) -> str | None:
    raw: str | None = getattr(route, key)
    if raw is None:
        return None
    where = f"routes.{route.name}.{key}"
    url = expand_variables(raw, where)
    if not url.startswith(_SCHEMES):
        raise ConfigError(f"{where}: expected a redis://, rediss://, unix:// or sentinel:// URL, "
                          f"got {safe_url(url)!r}")
    return url


def route_settings(settings: Settings, route: RouteSpec) -> Settings:
    """``settings`` as seen by ``route``: its own broker and cache URLs where it names them."""
    update = {key: url for key in ("broker_url", "cache_url")
              if (url := _url(route, key)) is not None}
    return settings.model_copy(update=update) if update else settings


def route_queues(route: RouteSpec) -> list[str]:
    """Every queue a route may send to: its model's and each fallback model's."""
    return list(dict.fromkeys(route_queue(route.served_by(model)) for model in route.chain))


def queue_settings(registry: Registry, settings: Settings) -> dict[str, Settings]:
    """Each queue of the routes and the settings of the broker it lives on.

    Raises `ConfigError` when two routes send one queue to different brokers.
    """
    found: dict[str, tuple[str, Settings]] = {}
    for route in registry.routes.values():
        own = route_settings(settings, route)
        for queue in route_queues(route):
            first = found.setdefault(queue, (route.name, own))
            if first[1].broker != own.broker:
                raise ConfigError(
                    f"routes {first[0]!r} and {route.name!r} both send to queue {queue} but "
                    f"name different brokers ({safe_url(first[1].broker)}, "
                    f"{safe_url(own.broker)}); a queue lives on one broker")
    return {queue: own for queue, (_, own) in found.items()}


def settings_for_queues(registry: Registry, settings: Settings, queues: Iterable[str]
                        ) -> Settings:
    """The settings of the one broker that carries ``queues`` (a queue no route names is on
    the default broker); `ConfigError` when they live on different brokers, because one worker
    process claims, replies and beats its heart on one broker."""
    known = queue_settings(registry, settings)
    chosen = {queue: known.get(queue, settings) for queue in queues}
    brokers = {own.broker for own in chosen.values()}
    if len(brokers) > 1:
        listed = ", ".join(f"{queue} on {safe_url(own.broker)}" for queue, own in chosen.items())
        raise ConfigError(f"one worker serves queues of one broker only; got {listed}: start "
                          "one worker per broker")
    return next(iter(chosen.values()), settings)


def by_broker(registry: Registry, settings: Settings, queues: Iterable[str]
              ) -> list[tuple[Settings, list[str]]]:
    """``queues`` grouped by the broker that carries them (default broker first), so a reader
    makes one pipelined round trip per broker."""
    known = queue_settings(registry, settings)
    groups: dict[str, tuple[Settings, list[str]]] = {settings.broker: (settings, [])}
    for queue in queues:
        own = known.get(queue, settings)
        groups.setdefault(own.broker, (own, []))[1].append(queue)
    return [(own, names) for own, names in groups.values() if names]


def broker_clients(registry: Registry, settings: Settings, queues: Iterable[str],
                   socket_timeout: float) -> list[Group]:
    """Per broker: its settings, a client of it and the queues (of ``queues``) it carries."""
    return [(own, redis_client(own.broker, master_name=own.sentinel_master,
                               socket_timeout=socket_timeout), names)
            for own, names in by_broker(registry, settings, queues)]


def read_all(groups: list[Group], read: Callable[[redis.Redis, list[str]], list[T]]) -> list[T]:
    """``read`` each broker's queues (one pipelined round trip per broker), queues in group
    order."""
    return [item for _, client, names in groups for item in read(client, names)]
