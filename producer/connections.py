"""What one process of an `EmbeddingClient` holds: per broker, Redis clients, the two threads,
the load book.

Created on first use and again in a forked child (gunicorn ``--preload``, Celery, multiprocessing),
where the parent's threads do not exist. A route may name its own broker (`embedq.tasks.brokers`):
each broker gets its own sender, reply listener and outstanding table, made on the first request
of a route that uses it, so a reply comes back on the Redis its request went to and a broker
nobody uses costs nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from embedq.config.errors import EmbedqError
from embedq.config.registry import RouteSpec
from embedq.config.settings import Settings
from embedq.producer.dispatch import Dispatcher
from embedq.producer.outstanding import Outstanding
from embedq.producer.read_through import ReadThrough
from embedq.producer.replies import POLL_S, ReplyListener
from embedq.tasks.brokers import route_settings
from embedq.tasks.connections import redis_client
from embedq.tasks.names import reply_key
from embedq.tasks.producer_id import producer_reply_name
from embedq.tasks.redis_guard import RedisGuard, guarded_client

_CLIENT_TIMEOUT_S = 5.0


class BrokerLink:
    """Redis clients and the sender and reply-listener threads of one process for one broker
    (``settings`` are a route's: `route_settings`)."""

    def __init__(self, settings: Settings, serving: Callable[[RouteSpec], RouteSpec],
                 read_through: bool) -> None:
        self.settings = settings
        self.reply_key = reply_key(producer_reply_name(settings.producer_id))
        self.broker = redis_client(settings.broker, master_name=settings.sentinel_master,
                                   socket_timeout=_CLIENT_TIMEOUT_S, socket_keepalive=True,
                                   socket_connect_timeout=_CLIENT_TIMEOUT_S)
        self.replies = redis_client(settings.broker, master_name=settings.sentinel_master,
                                    socket_timeout=POLL_S + _CLIENT_TIMEOUT_S,
                                    socket_keepalive=True, socket_connect_timeout=_CLIENT_TIMEOUT_S)
        self.liveness = RedisGuard(guarded_client(settings, settings.broker), what="broker",
                                   backoff_max_s=settings.cache_backoff_max_s)
        self.read_through = ReadThrough(settings) if read_through else None
        self.outstanding = Outstanding()
        self.dispatcher = Dispatcher(settings, self.broker, self.outstanding, self.reply_key,
                                     serving, self.read_through)
        self.listener = ReplyListener(
            settings, self.replies, self.reply_key, self.outstanding, self.dispatcher.resend,
            lambda job, rows: self.dispatcher.submit(job, rows, alone=True))

    def close(self) -> None:
        """Stop both threads, fail whoever still waits, close the connections."""
        self.dispatcher.close()
        self.listener.close()
        closed = EmbedqError("the embedq client was closed before the reply arrived")
        for message in self.outstanding.drain():
            for job, _, _ in message.parts:
                job.fail(closed)
        for resource in (self.broker, self.replies, self.liveness, self.read_through):
            if resource is not None:
                resource.close()


class Connections:
    """One `BrokerLink` per broker URL of this process, made on a route's first use."""

    def __init__(self, settings: Settings, serving: Callable[[RouteSpec], RouteSpec],
                 read_through: bool) -> None:
        self.pid = os.getpid()
        self.settings = settings
        self._serving = serving
        self._read_through = read_through
        self._links: dict[str, BrokerLink] = {}  # by broker URL
        self._by_route: dict[str, BrokerLink] = {}
        self._lock = threading.Lock()

    def link(self, route: RouteSpec) -> BrokerLink:
        """The link to the broker of ``route``'s queues (looked up by route name after the
        first time: every request asks)."""
        link = self._by_route.get(route.name)
        if link is not None:
            return link
        own = route_settings(self.settings, route)
        with self._lock:
            if own.broker not in self._links:
                self._links[own.broker] = BrokerLink(own, self._serving, self._read_through)
            self._by_route[route.name] = self._links[own.broker]
            return self._links[own.broker]

    def close(self) -> None:
        """Close every link: stop its threads, fail whoever still waits."""
        with self._lock:
            links, self._links, self._by_route = list(self._links.values()), {}, {}
        for link in links:
            link.close()
